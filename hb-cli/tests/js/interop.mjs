// Drives a node with @permaweb/aoconnect 0.0.98 in mainnet mode, as a user would, and prints
// one JSON object with what the client saw. Run by ../aoconnect.rs:
//
//   node interop.mjs <node URL> <wallet.json> <module ID> [timed messages]
import fs from 'node:fs'

// Every exchange is traced to stderr (shown by the Rust test when it fails).
const realFetch = globalThis.fetch
globalThis.fetch = async (url, opts) => {
  const res = await realFetch(url, opts)
  const body = await res.clone().text()
  const headers = [...res.headers.entries()].map(([k, v]) => `${k}: ${v.slice(0, 120)}`).join(' | ')
  console.error(`${opts?.method ?? 'GET'} ${url} -> ${res.status} [${headers}] ${body.slice(0, 400)}`)
  return res
}
const { connect, createSigner } = await import('@permaweb/aoconnect')

const [url, walletPath, moduleId, timedArg] = process.argv.slice(2)
const timed = Number(timedArg ?? 20)
const jwk = JSON.parse(fs.readFileSync(walletPath, 'utf8'))
const ao = connect({ MODE: 'mainnet', URL: url, signer: createSigner(jwk) })

const out = { evals: [], timings: {} }
const eval_ = (process, data) =>
  ao.message({ process, tags: [{ name: 'Action', value: 'Eval' }], data })

let t = performance.now()
const pid = await ao.spawn({ module: moduleId, tags: [{ name: 'Name', value: 'interop' }] })
out.timings.spawn_ms = performance.now() - t
out.pid = pid

for (const code of ['X = 41', 'X = X + 1; return X', 'return 1+1', "error('boom')"]) {
  const slot = await eval_(pid, code)
  const r = await ao.result({ process: pid, slot })
  out.evals.push({ code, slot, data: r.Output?.data ?? null, error: r.Error ?? null, messages: r.Messages.length })
}

// A dry run sees the state and changes nothing.
const dry = await ao.dryrun({ process: pid, tags: [{ name: 'Action', value: 'Eval' }], data: 'X = 1000; return X' })
out.dryrun = { data: dry.Output?.data ?? null, error: dry.Error ?? null }
const after = await eval_(pid, 'return X')
out.after_dryrun = { slot: after, data: (await ao.result({ process: pid, slot: after })).Output?.data ?? null }

// Results by message ID, then the `results` listing.
const withId = await ao.message({
  process: pid, tags: [{ name: 'Action', value: 'Eval' }], data: 'return "by id"', returnMessageId: true, returnAssignmentSlot: true,
})
out.by_id = { slot: withId.slot, id: withId.id, data: (await ao.result({ process: pid, message: withId.id })).Output?.data ?? null }
const listed = await ao.results({ process: pid })
out.results = listed.edges.map((e) => ({ cursor: e.cursor, data: e.node.Output?.data ?? null }))

// Timings: message + result round trips.
const lat = []
t = performance.now()
for (let i = 0; i < timed; i++) {
  const s = performance.now()
  const slot = await eval_(pid, `N = (N or 0) + 1; return N`)
  await ao.result({ process: pid, slot })
  lat.push(performance.now() - s)
}
const total = performance.now() - t
lat.sort((a, b) => a - b)
out.timings.message_result = {
  n: timed,
  per_second: timed / (total / 1000),
  p50_ms: lat[Math.floor(lat.length * 0.5)] ?? null,
  p99_ms: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))] ?? null,
}
const last = await eval_(pid, 'return N')
out.final_counter = (await ao.result({ process: pid, slot: last })).Output?.data ?? null

console.log(JSON.stringify(out))
