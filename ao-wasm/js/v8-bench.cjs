// The same `return 1+1` benchmark as ao-wasm/benches/aos.rs, on V8 (Node 20):
// * HyperBEAM's aos-2-pure-xs.wasm (original, legacy exceptions, which V8 supports) driven
//   directly through the aos ABI with HyperBEAM-style stub imports;
// * the two ao-loader aos builds through @permaweb/ao-loader with UNSAFE_MEMORY (no heap copy).
// Usage: node --experimental-wasm-memory64 v8-bench.cjs FIXTURES_WASM_DIR [N] [plain|signed]
'use strict'
const fs = require('fs')
const path = require('path')

const dir = process.argv[2]
const N = Number(process.argv[3] || 1000)
// `signed`: the message and env shape of a signed Eval on the node (as benches/aos.rs builds it).
const signed = process.argv[4] === 'signed'
const PID = 'w1QMlUh4gdKqYa4AI4p_B1Uja2qKbkM23ynKmtIwFb8'
const OWNER = 'vcaPe4JWnrSOCktDHBgXge-zWUb6JRkqbom5w9t7i-4'
const MODULE = 'a_cHnnTSkJBMUKpzAhUl515-qEXRnKnt736jr9Eb8q4'
const SIG = 'niuT08eEF9fdI86mac2Kps_zzh3PVUw5khoXW46mgHfzJhsWQQLN7_JLfYzUcpcK0Oyn'.repeat(11).slice(0, 683)
const env = signed
  ? {
      Process: {
        Id: PID,
        Owner: OWNER,
        Tags: [
          { name: 'Device', value: 'process@1.0' }, { name: 'Execution-Device', value: 'genesis-wasm@1.0' },
          { name: 'Module', value: MODULE }, { name: 'Name', value: 'bench' }, { name: 'Type', value: 'Process' }
        ]
      },
      Module: { Id: MODULE, Owner: '', Tags: [{ name: 'Type', value: 'Module' }] }
    }
  : { Process: { Id: 'PROCESS', Owner: 'OWNER', Tags: [{ name: 'Name', value: 'bench' }] } }
const msg = (i) => signed
  ? {
      Id: ('MSG' + i).padEnd(43, 'A'), Owner: OWNER, From: OWNER, Target: PID, Anchor: '', Signature: SIG,
      Tags: [{ name: 'Action', value: 'Eval' }, { name: 'Nonce', value: String(i) }, { name: 'Type', value: 'Message' }],
      Data: 'return 1+1', Module: MODULE, 'Block-Height': 0, Timestamp: '1796614473784', Nonce: String(i),
      Epoch: '0', 'Hash-Chain': ('CHAIN' + i).padEnd(43, 'B')
    }
  : {
      Id: 'MSG' + i, Target: 'PROCESS', Owner: 'OWNER', From: 'OWNER', Module: 'MODULE',
      'Block-Height': '1000', Timestamp: '1700000000000', Tags: [{ name: 'Action', value: 'Eval' }],
      Data: 'return 1+1'
    }
const now = () => Number(process.hrtime.bigint()) / 1e6
const pct = (s, p) => s[Math.round((s.length - 1) * p)]
const row = (name, load, first, times) => {
  times.sort((a, b) => a - b)
  console.log(`${name.padEnd(48)} load ${load.toFixed(1).padStart(6)}ms  1st ${first.toFixed(2).padStart(7)}ms  p50 ${pct(times, 0.5).toFixed(3)}ms  p99 ${pct(times, 0.99).toFixed(3)}ms`)
}

async function direct (file) {
  const bytes = fs.readFileSync(path.join(dir, file))
  let t = now()
  const module = await WebAssembly.compile(bytes)
  let inst = null
  const mem = () => inst.exports.memory.buffer
  const imports = {}
  for (const imp of WebAssembly.Module.imports(module)) {
    imports[imp.module] ||= {}
    let f = () => 0
    if (imp.name === 'fd_write') {
      f = (fd, iovs, n, ret) => {
        const v = new DataView(mem()); let total = 0n
        for (let i = 0n; i < BigInt(n); i++) total += v.getBigUint64(Number(BigInt(iovs) + i * 16n + 8n), true)
        v.setBigUint64(Number(ret), total, true); return 0
      }
    } else if (imp.name === 'clock_time_get') f = () => 1
    else if (imp.name === 'proc_exit') f = (c) => { throw new Error('exit ' + c) }
    imports[imp.module][imp.name] = f
  }
  inst = await WebAssembly.instantiate(module, imports)
  const load = now() - t
  const enc = new TextEncoder()
  const write = (s) => {
    const b = enc.encode(s); const p = inst.exports.malloc(BigInt(b.length + 1))
    const u = new Uint8Array(mem()); u.set(b, Number(p)); u[Number(p) + b.length] = 0; return p
  }
  const read = (p) => {
    const u = new Uint8Array(mem()); let e = Number(p); while (u[e]) e++
    return Buffer.from(u.subarray(Number(p), e)).toString('utf8')
  }
  const call = (i) => read(inst.exports.handle(write(JSON.stringify(msg(i))), write(JSON.stringify(env))))
  t = now(); const r = call(0); const first = now() - t
  if (!r.includes('"data":"2"')) throw new Error(r)
  const times = []
  for (let i = 1; i <= N; i++) { t = now(); call(i); times.push(now() - t) }
  row(`V8 direct ${file} (${N})`, load, first, times)
}

async function loader (file, format) {
  const AoLoader = require('@permaweb/ao-loader')
  const bytes = fs.readFileSync(path.join(dir, file))
  let t = now()
  const handle = await AoLoader(bytes, { format, UNSAFE_MEMORY: true })
  const load = now() - t
  t = now(); const r = await handle(null, msg(0), env); const first = now() - t
  if (r.Output.data !== '2') throw new Error(JSON.stringify(r.Output))
  const times = []
  for (let i = 1; i <= N; i++) { t = now(); await handle(null, msg(i), env); times.push(now() - t) }
  row(`ao-loader ${file} (${N})`, load, first, times)
}

async function main () {
  await direct('aos-2-pure-xs.wasm')
  await direct('aos-2-pure.wasm')
  await loader('ao-loader-emscripten4-aos2.wasm', 'wasm32-unknown-emscripten4')
  await loader('ao-loader-wasm64-emscripten-aos2.wasm', 'wasm64-unknown-emscripten-draft_2024_02_15')
}
main().catch((e) => { console.error(e); process.exit(1) })
