//! Differential tests: the same 60 evals on our host and on a reference host, compared byte for
//! byte (the raw result JSON of every `handle` call):
//!
//! * the ao-loader-format modules (aos 2 in both emscripten-4 formats, aos 1 in
//!   `wasm32-unknown-emscripten2`) against `@permaweb/ao-loader@0.0.49` (V8). The node script and
//!   its lock file are in `ao-wasm/js/`; the test runs `npm ci` there when `node_modules` is
//!   missing (so the first run needs the npm registry);
//! * HyperBEAM's standalone aos build against the reference host `tools/aos_eval.py` of the
//!   shared fixtures (Python, on the `wasmtime` package). Its pinned requirement is in
//!   `ao-wasm/py/`; the test creates a virtual environment there when it is missing (so the
//!   first run needs `python3` and PyPI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::common::*;

/// Lua snippets, run in order in one instance: arithmetic, strings, tables, closures,
/// metatables, errors, coroutines, JSON, messages, addresses of fresh tables (the heap must
/// evolve exactly as under ao-loader), the clock and the PRNG, and heap growth past the
/// initial memory (emscripten_resize_heap).
const EVALS: &[&str] = &[
    "return 1+1",
    "X = 5",
    "return X",
    "return X * 2.5",
    "return 7 // 2, 7 % 3, 2^10",
    "return 0.1 + 0.2",
    "return tostring(1/0), tostring(-1/0), tostring(math.huge)",
    // Not `tostring(0/0)`: V8 on x86 yields the sign-bit-set default NaN ("-nan"), our engine
    // canonicalizes NaNs ("nan") so every node agrees; see the crate docs.
    "local n = 0/0 return n ~= n",
    "return math.maxinteger, math.mininteger",
    "return string.format('%5.2f|%d|%x|%s|%q', 3.14159, 42, 255, 'hi', 'a\\nb')",
    "return ('hello'):upper() .. ('WORLD'):lower()",
    "return string.rep('ab', 5, ',')",
    "return ('a,b,,c'):gsub(',', ';')",
    "return ('key=value'):match('(%w+)=(%w+)')",
    "local t = {} for w in ('the quick brown fox'):gmatch('%a+') do t[#t+1] = w end return table.concat(t, '|')",
    "T = {5, 3, 8, 1, 9, 2} table.sort(T) return table.concat(T, ',')",
    "table.sort(T, function(a, b) return a > b end) return table.concat(T, ',')",
    "return #T, select('#', 1, 2, 3), select(2, 'a', 'b', 'c')",
    "Counter = (function() local n = 0 return function() n = n + 1 return n end end)()",
    "return Counter(), Counter(), Counter()",
    "local mt = {__add = function(a, b) return a.v + b.v end} local a = setmetatable({v=2}, mt) local b = setmetatable({v=3}, mt) return a + b",
    "local ok, err = pcall(error, {code = 7}) return ok, type(err), err.code",
    "local ok, err = pcall(function() local x = nil; return x.y end) return ok, err",
    "error('boom')",
    "error({not_a_string = true})",
    "return X",
    "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) local _, r1 = coroutine.resume(co, 1) local _, r2 = coroutine.resume(co, 10) return r1, r2, coroutine.status(co)",
    "local json = require('json') return json.encode({a = 1, b = {1, 2, 3}, c = 'x'})",
    "local json = require('json') local v = json.decode('{\"k\":[1,2,{\"z\":true}]}') return v.k[3].z, #v.k",
    "Send({Target = 'X', Data = 'hi', Action = 'Ping'}); return 'sent'",
    "Send({Target = 'Y', Data = 'a', Tags = {Foo = 'bar'}}); Send({Target = 'Z', Data = 'b'}); print('two'); return 'ok'",
    "print('hello') print(42) print({1, 2}) return nil",
    "return tostring({}), tostring({})",
    "Big = {} for i = 1, 1000 do Big[i] = {i, tostring(i)} end return #Big",
    "return tostring(Big[500]), tostring({})",
    "return os.time(), os.clock()",
    "return os.date('%Y-%m-%d %H:%M:%S', 86400 * 365)",
    "return os.date('!%c', 1700000000)",
    "return math.random(), math.random(1, 10), math.random(100)",
    "math.randomseed(42) return math.random(1, 1000), math.random(1, 1000)",
    "return math.floor(-3.5), math.ceil(-3.5), math.abs(-7), math.fmod(7, 3), math.sqrt(2)",
    "return math.type(1), math.type(1.0), math.type('1'), math.tointeger(3.0)",
    "return 5 & 3, 5 | 3, 5 ~ 3, ~5, 1 << 10, 256 >> 4",
    "return utf8.char(72, 228, 8364, 128512), utf8.len('häll€')",
    "return #'häll€', ('häll€'):byte(2, 3)",
    "local s = 0 for i = 1, 100000 do s = s + i end return s",
    "local f = load('return 6 * 7') return f()",
    "local f, err = load('return +') return f, err",
    "do local i = 0 ::top:: i = i + 1 if i < 5 then goto top end return i end",
    "return next({}), type(next), rawlen({1, 2, 3}), rawequal(T, T)",
    "return string.pack and #string.pack('i4i8', 1, 2) or 'no pack'",
    "return table.unpack({1, 2, 3})",
    "local t = setmetatable({}, {__index = function(_, k) return k .. '!' end}) return t.foo, t[1]",
    "return tostring(nil), tostring(true), tonumber('0x10'), tonumber('1e3'), tonumber('z', 36)",
    "Huge = {} for i = 1, 120 do Huge[i] = string.rep(string.char(65 + i % 26), 1000000) end return #Huge, #Huge[7]",
    "return tostring({}), collectgarbage('count') > 0",
    "Huge = nil collectgarbage() return tostring({})",
    "Handlers.add('ping', Handlers.utils.hasMatchingTag('Action', 'Ping'), function(msg) Send({Target = msg.From, Data = 'pong'}) end) return #Handlers.list",
    "return Inbox and #Inbox, Owner, ao.id",
    "return X, Counter(), #T",
];

/// The file system as the emscripten-4 glue of ao-loader presents it to aos 2 (appended to
/// [`EVALS`] for those builds): nothing can be opened or created, removed or renamed; `require`
/// searches and finds nothing; the standard streams exist. (The emscripten-2 glue of aos 1 has
/// a writable in-memory file system: [`MEMFS_EVALS`]; HyperBEAM's WASI answers differently
/// again: not covered.)
const FS_EVALS: &[&str] = &[
    "local f, e, c = io.open('/tmp/x', 'w') return tostring(f), e, c",
    "local f, e, c = io.open('/data/y') return tostring(f), e, c",
    "local f, e, c = io.open('x.txt', 'a+') return tostring(f), e, c",
    "return os.remove('/tmp/x')",
    "return os.rename('/tmp/a', '/tmp/b')",
    "local ok, e = pcall(require, 'nosuchmodule') return ok, e",
    "io.write('to stdout') return 'w'",
    "return os.getenv('HOME'), os.getenv('PATH')",
    "return io.type(io.stdout), io.type(42), tostring(io.stderr:write('e'))",
    "return pcall(io.lines, '/etc/passwd')",
    "return io.stdout:seek('cur')",
];

/// The writable in-memory file system (MEMFS) the emscripten-2 glue of ao-loader gives aos 1
/// (appended to [`EVALS`] for that build): files written, read back, appended to, seeked in,
/// renamed and removed, errors for missing files and directories, state kept across evals.
const MEMFS_EVALS: &[&str] = &[
    // aos 1 shows only the first of several results: join them into one string.
    "J = function(...) local t = table.pack(...) for i = 1, t.n do t[i] = tostring(t[i]) end return table.concat(t, '|') end",
    "local f = io.open('/tmp/x', 'w') f:write('hi') f:close() return J(io.open('/tmp/x'):read('*a'))",
    "local f = io.open('/tmp/x', 'a') f:write(' there', 1, 2.5) f:close() return J(io.open('/tmp/x'):read('a'))",
    "local f = io.open('/tmp/x', 'r+') local p = f:seek('set', 3) f:write('T') local e = f:seek('end') f:seek('set', 0) local all = f:read('a') f:close() return J(p, e, all)",
    "local f, e, c = io.open('/tmp/missing') return J(tostring(f), e, c)",
    "local f, e, c = io.open('/nodir/y', 'w') return J(tostring(f), e, c)",
    "local f, e, c = io.open('/tmp', 'w') return J(tostring(f), e, c)",
    "local f = io.open('/tmp') local r, e, c = f:read('a') f:close() return J(io.type(f), r, e, c)",
    "return J(os.rename('/tmp/x', '/tmp/y'), io.open('/tmp/x') == nil, io.open('/tmp/y'):read('l'))",
    "return J(os.remove('/tmp/y'), os.remove('/tmp/y'))",
    "return J(os.remove('/dev/shm/tmp'), os.rename('/tmp/none', '/tmp/z'), os.remove('/home'))",
    "local n = 0 for l in io.lines('/home/web_user/../web_user/f.txt') do n = n + 1 end return J(n)",
    "local f = io.open('/home/web_user/f.txt', 'w') for i = 1, 5 do f:write('line ', i, '\\n') end f:close() return J('ok')",
    "local t = {} for l in io.lines('/home/web_user/f.txt') do t[#t+1] = l end return J(#t, t[5], io.open('/home/web_user/f.txt'):seek('end'))",
    "local f = io.open('/tmp/big', 'wb') f:write(string.rep('abcdefgh', 20000)) f:close() local g = io.open('/tmp/big', 'rb') g:seek('set', 159990) return J(g:read(20), g:read(5), g:read('a') == '')",
    "local f = io.open('/mymod.lua', 'w') f:write('return {v = 42}') f:close() local ok, m = pcall(require, 'mymod') return J(ok, type(m) == 'table' and m.v or m)",
    "io.open('/dev/null', 'w'):write('gone') return J(io.open('/dev/null'):read('a'), io.type(io.open('/dev/tty', 'w')))",
    "local f = io.open('/tmp/w', 'w') local r, e, c = f:read('a') return J(r, e, c, f:seek('cur', -5))",
    "return J(io.open('/tmp/big/x'), os.rename('/tmp/big', '/tmp/big/y'), os.rename('/tmp', '/tmp/sub'))",
];

fn js_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/js"))
}

fn ensure_ao_loader() {
    let dir = js_dir();
    if dir.join("node_modules/@permaweb/ao-loader").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm is needed to install @permaweb/ao-loader for the differential test");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// The raw result strings of each eval under ao-loader.
fn ao_loader_results(rel: &str, format: &str, messages: &[serde_json::Value]) -> Vec<String> {
    ensure_ao_loader();
    let input = serde_json::json!({
        "env": serde_json::from_str::<serde_json::Value>(ENV).unwrap(),
        "messages": messages,
    });
    let mut child = Command::new("node")
        .args(["--experimental-wasm-memory64", "aoloader-evals.cjs"])
        .arg(format!("{FIXTURES}/{rel}"))
        .arg(format)
        .current_dir(js_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (20+) is needed for the differential test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| serde_json::from_str::<String>(l).expect("a JSON string"))
        .collect()
}

/// [`EVALS`] then [`FS_EVALS`].
fn differential(rel: &str, format: &str) {
    differential_of(rel, format, &[EVALS, FS_EVALS].concat());
}

fn differential_of(rel: &str, format: &str, evals: &[&str]) {
    let messages: Vec<serde_json::Value> = evals
        .iter()
        .enumerate()
        .map(|(n, code)| serde_json::from_str(&eval_msg(n + 1, code)).unwrap())
        .collect();
    let theirs = ao_loader_results(rel, format, &messages);
    assert_eq!(theirs.len(), evals.len());
    let engine = engine();
    let module = load(&engine, rel);
    let mut ours = aos(&module);
    for (n, code) in evals.iter().enumerate() {
        // ao-loader hands the message to `handle` as JSON.stringify of the same object.
        let msg = serde_json::to_string(&messages[n]).unwrap();
        let got = ours.handle(&msg, ENV).unwrap();
        assert_eq!(got, theirs[n], "eval {} `{code}` differs", n + 1);
    }
}

#[test]
fn emscripten4_matches_ao_loader() {
    differential(
        "wasm/ao-loader-emscripten4-aos2.wasm",
        "wasm32-unknown-emscripten4",
    );
}

/// aos 1 (`wasm32-unknown-emscripten2`): the same evals but the 120 MB one (and the one that
/// frees it): its glue caps the heap at 500 MB, and that eval drives either host into repeated
/// emergency collections (half a minute under ao-loader, minutes here in a debug build).
#[test]
fn emscripten2_aos1_matches_ao_loader() {
    let evals: Vec<&str> = EVALS
        .iter()
        .copied()
        .filter(|code| !code.starts_with("Huge ="))
        .chain(MEMFS_EVALS.iter().copied())
        .collect();
    assert!(evals.len() >= 50);
    differential_of(
        "wasm/ao-loader-emscripten2-aos1.wasm",
        "wasm32-unknown-emscripten2",
        &evals,
    );
}

#[test]
fn wasm64_emscripten_matches_ao_loader() {
    differential(
        "wasm/ao-loader-wasm64-emscripten-aos2.wasm",
        "wasm64-unknown-emscripten-draft_2024_02_15",
    );
}

// ---- the native module against tools/aos_eval.py ----------------------------------------------

fn py_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/py"))
}

fn aos_eval_py() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/tools/aos_eval.py"
    ))
}

/// Runs a setup command, failing the test with a message naming the step when it cannot.
fn setup_step(what: &str, cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({cmd:?}, {}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The virtual environment's Python, with the pinned `wasmtime` installed (created on first
/// use; several tests may ask at once).
fn reference_python() -> PathBuf {
    static SETUP: Mutex<()> = Mutex::new(());
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let dir = py_dir();
    let python = dir.join(".venv/bin/python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import wasmtime"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return python;
    }
    setup_step(
        "creating the Python virtual environment for tools/aos_eval.py (python3 with its venv \
         module is needed)",
        Command::new("python3")
            .args(["-m", "venv", ".venv"])
            .current_dir(&dir),
    );
    setup_step(
        "installing the pinned `wasmtime` from PyPI for tools/aos_eval.py",
        Command::new(dir.join(".venv/bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ])
            .current_dir(&dir),
    );
    assert!(
        ready(&python),
        "`wasmtime` still cannot be imported by {}",
        python.display()
    );
    python
}

/// The raw result strings of each eval under `tools/aos_eval.py`, which builds the same
/// messages ([`eval_msg`]) and the same env ([`ENV`]). `--hb-clock`: `clock_time_get`
/// answers errno 1 as HyperBEAM's (and our) WASI does.
fn aos_eval_py_results(rel: &str, codes: &[&str]) -> Vec<String> {
    let out = setup_step(
        "running tools/aos_eval.py",
        Command::new(reference_python())
            .arg(aos_eval_py())
            .arg(format!("{FIXTURES}/{rel}"))
            .args(codes)
            .arg("--hb-clock")
            .env("PYTHONIOENCODING", "utf-8"),
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 results")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// JSON text as Python's `json.dumps` writes it (`ensure_ascii`): every non-ASCII character
/// as `\uXXXX` UTF-16 escapes. The module never frees the message buffers the host allocates,
/// so their exact lengths shape its heap, and addresses such as `tostring({})` show it.
fn python_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[test]
fn native_aos_matches_aos_eval_py() {
    let rel = "wasm/aos-2-pure-xs.exnref.wasm";
    let theirs = aos_eval_py_results(rel, EVALS);
    assert_eq!(theirs.len(), EVALS.len(), "one result line per eval");
    let engine = engine();
    let module = load(&engine, rel);
    let mut ours = aos(&module);
    for (n, code) in EVALS.iter().enumerate() {
        let got = ours
            .handle(&python_json(&eval_msg(n + 1, code)), ENV)
            .unwrap();
        assert_eq!(got, theirs[n], "eval {} `{code}` differs", n + 1);
    }
    assert_eq!(ours.instance().undefined_calls(), 0);
}

/// The one intended difference: the reference host runs wasmtime without NaN canonicalization,
/// so the sign of a NaN that arithmetic produces is the CPU's (x86's default NaN has its sign
/// bit set: Lua's `tostring(0/0)` is `-nan` there), where ours is the canonical, positive NaN on
/// every machine (`nan`; negating it is a sign-bit operation, so `-(0/0)` is `-nan`). Everything
/// else in the answer is identical.
#[test]
fn native_aos_nan_is_canonical() {
    let rel = "wasm/aos-2-pure-xs.exnref.wasm";
    let cases = [
        ("return tostring(0/0)", "nan"),
        ("return tostring(-(0/0))", "-nan"),
    ];
    let codes: Vec<&str> = cases.iter().map(|(code, _)| *code).collect();
    let theirs = aos_eval_py_results(rel, &codes);
    let engine = engine();
    let module = load(&engine, rel);
    let mut ours = aos(&module);
    let unsigned = |s: &str| s.replace("-nan", "nan");
    for (n, (code, want)) in cases.iter().enumerate() {
        let got = ours.handle(&eval_msg(n + 1, code), ENV).unwrap();
        assert_eq!(output_data(&got).as_deref(), Ok(*want), "`{code}`");
        assert_eq!(unsigned(&got), unsigned(&theirs[n]), "`{code}`");
    }
}
