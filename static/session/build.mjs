// Minify the session manager and print its size. Output (not committed) goes to
// static/session/dist/, or to the folder given as the first argument:
//   session-manager.min.js   classic script (IIFE) for a plain <script> tag
//   session-manager.min.mjs  ES module, for `import sessionManager from ...`
import { build } from 'esbuild'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { gzipSync } from 'node:zlib'

const entry = new URL('./session-manager.js', import.meta.url).pathname
const dist = process.argv[2] ? resolve(process.argv[2]) : new URL('./dist', import.meta.url).pathname
const common = { entryPoints: [entry], bundle: true, minify: true, target: 'es2019', legalComments: 'none', logLevel: 'warning' }

await build({ ...common, format: 'iife', outfile: `${dist}/session-manager.min.js` })
await build({ ...common, format: 'esm', outfile: `${dist}/session-manager.min.mjs` })

for (const name of ['session-manager.min.js', 'session-manager.min.mjs']) {
  const raw = readFileSync(`${dist}/${name}`)
  console.log(`${name}: ${raw.length} bytes minified, ${gzipSync(raw, { level: 9 }).length} bytes gzipped`)
}
