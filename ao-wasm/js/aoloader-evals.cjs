// Runs a sequence of aos Eval messages through @permaweb/ao-loader (one instance, state kept)
// and prints, one `RESULT <JSON string>` line per message, the exact result JSON each `handle`
// returned (other lines on stdout are the glue's own logging).
//
// Usage: node --experimental-wasm-memory64 aoloader-evals.cjs MODULE.wasm FORMAT < evals.json
// where evals.json is {"env": {...}, "messages": [{...}, ...]}.
'use strict'
const fs = require('fs')

// ao-loader parses the module's answer with JSON.parse; keep the raw string it was given.
const originalParse = JSON.parse
let lastRaw = null
JSON.parse = function (text, reviver) {
  lastRaw = text
  return originalParse.call(JSON, text, reviver)
}

async function main () {
  const [modulePath, format] = process.argv.slice(2)
  const input = originalParse(fs.readFileSync(0, 'utf8'))
  const AoLoader = require('@permaweb/ao-loader')
  const wasm = fs.readFileSync(modulePath)
  // The emscripten-2 glue runs `main` with node's own script path and arguments (its argv lands
  // on the wasm stack); show it the program name it uses outside node and no arguments, as
  // ao-wasm does, so the run does not depend on where this script lives.
  if (format === 'wasm32-unknown-emscripten2') {
    process.argv.splice(1, process.argv.length, './this.program')
  }
  const handle = await AoLoader(wasm, { format, UNSAFE_MEMORY: true })
  for (const msg of input.messages) {
    lastRaw = null
    try {
      await handle(null, msg, input.env)
    } catch (e) {
      // ok:false responses are thrown; the raw answer was still recorded.
    }
    process.stdout.write('RESULT ' + JSON.stringify(lastRaw) + '\n')
  }
}

main().catch((e) => { console.error(e); process.exit(1) })
