'use strict';
/*
 * layer.test.js - the layer check (node --test; CTest sets MM_LAYER_ZIP to
 * the zip the `layer` target built, and MM_OBJDUMP).
 *
 * MM_LAYER_ARCH names the zip's architecture (x86_64 or arm64, default
 * x86_64); MM_LAYER_EXEC, when set, is a command that runs the layer's
 * executables (qemu-aarch64 for an arm64 layer on an x86_64 host). Without
 * it, a layer of another architecture than the host's gets the static
 * checks (1, 2) only.
 *
 * The zip is unpacked (with unzip, as Lambda unpacks a layer) into a
 * temporary directory standing in for /opt, then:
 *  1. layout: bootstrap at the root (mode 755), bin/murmur-ddb, lua/murmur.lua,
 *     and lib/ holding shared libraries only - or no lib/ at all when the
 *     executables need nothing but glibc (the build with the static,
 *     minimal libcurl of scripts/curl-min);
 *  2. glibc: no ELF file needs a GLIBC_ symbol version above 2.34 (Amazon
 *     Linux 2023), nor GLIBC_PRIVATE (objdump -T); every DT_NEEDED library is
 *     either in lib/ or one of glibc's; the checker is shown to reject a
 *     binary that needs GLIBC_2.36;
 *  3. loading: the dynamic loader, under Lambda's LD_LIBRARY_PATH with the
 *     host's own library directory first (as /lib64 comes first in Lambda),
 *     takes every non-glibc library from the layer's lib/;
 *  4. end to end: the unpacked bootstrap serves the Runtime API emulator
 *     with only what Lambda sets in its environment (env -i, then
 *     AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, LD_LIBRARY_PATH,
 *     region, credentials, and the function setting MURMUR_STORE); a
 *     syntax error becomes an init error naming decode.lua:LINE; the
 *     layer's bin/murmur-ddb runs the example in the same environment.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { runBootstrap: runBootstrapWith } = require('../emulator/run-bootstrap.js');

const ZIP = process.env.MM_LAYER_ZIP;
const OBJDUMP = process.env.MM_OBJDUMP || 'objdump';
const ARCH = process.env.MM_LAYER_ARCH || 'x86_64';
const EXEC = (process.env.MM_LAYER_EXEC || '').split(' ').filter(Boolean);
/* ELF e_machine of the layer's architecture. */
const MACHINE = { x86_64: 62, arm64: 183 }[ARCH];
const HOST_ARCH = { x64: 'x86_64', arm64: 'arm64' }[process.arch];
const ROOT = path.resolve(__dirname, '../..');
const EXAMPLE = path.join(ROOT, 'lua/examples/order_totals');
const skip = ZIP ? false : 'MM_LAYER_ZIP is not set';
/* The runtime checks need a way to run the layer's executables. */
const skipRun = skip || (ARCH === HOST_ARCH || EXEC.length ? false
  : `a ${ARCH} layer on a ${HOST_ARCH} host without MM_LAYER_EXEC`);

/* spawn/execFileSync arguments that run a layer executable. */
function runArgs(file, args = []) {
  return EXEC.length ? [EXEC[0], [...EXEC.slice(1), file, ...args]] : [file, args];
}

/* The newest glibc of Amazon Linux 2023, and the libraries glibc 2.34
 * provides (the layer leaves only these to the host). */
const GLIBC_MAX = [2, 34];
const GLIBC_LIBS = new Set(['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1',
  'libresolv.so.2', 'libutil.so.1', 'libanl.so.1', 'libBrokenLocale.so.1', 'libnsl.so.1',
  'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1']);

/* Lambda's LD_LIBRARY_PATH (runtime-contract section 3), with /opt and
 * /var/task replaced by the test's directories. */
function lambdaLibraryPath(opt, task) {
  return ['/var/lang/lib', '/lib64', '/usr/lib64', '/var/runtime', '/var/runtime/lib', task,
    `${task}/lib`, `${opt}/lib`].join(':');
}

/* What Lambda sets that the runtime reads, and nothing else. */
function lambdaEnv(opt, task, extra) {
  return {
    LD_LIBRARY_PATH: lambdaLibraryPath(opt, task),
    LAMBDA_TASK_ROOT: task,
    _HANDLER: 'decode',
    AWS_REGION: 'eu-west-1',
    AWS_DEFAULT_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDLAYERCHECK000000',
    AWS_SECRET_ACCESS_KEY: 'layer-check-secret-never-logged',
    AWS_SESSION_TOKEN: 'layer-check-token-never-logged',
    MURMUR_STORE: 'memory://',
    ...extra,
  };
}

let OPT;       // the unpacked layer
let WORK;      // scratch
test.before(() => {
  if (!ZIP) return;
  WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-layer-'));
  OPT = path.join(WORK, 'opt');
  fs.mkdirSync(OPT);
  execFileSync('unzip', ['-q', ZIP, '-d', OPT]);
});
test.after(() => { if (WORK) fs.rmSync(WORK, { recursive: true, force: true }); });

/* Every regular file under dir, relative paths, sorted. */
function walk(dir, rel = '') {
  const out = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

/* The ELF header's e_machine (little-endian ELF64), or null when the
 * file is not ELF. */
function elfMachine(file) {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(20);
    if (fs.readSync(fd, b, 0, 20, 0) !== 20 || !b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])))
      return null;
    return b.readUInt16LE(18);
  } finally {
    fs.closeSync(fd);
  }
}
const isElf = (file) => elfMachine(file) !== null;

/*
 * The glibc problems of one ELF file: symbol versions above GLIBC_MAX or
 * GLIBC_PRIVATE in its dynamic symbol table (objdump -T), and DT_NEEDED
 * libraries that are neither glibc's nor in libDir. Returns a list of
 * messages (empty: fine).
 */
function glibcProblems(file, libDir, objdump = OBJDUMP) {
  const problems = [];
  const syms = execFileSync(objdump, ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const line of syms.split('\n')) {
    const m = /\(?GLIBC_([0-9.]+|PRIVATE)\)?\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    if (m[1] === 'PRIVATE') { problems.push(`${m[2]}@GLIBC_PRIVATE`); continue; }
    const v = m[1].split('.').map(Number);
    const major = v[0];
    const minor = v[1] || 0;
    if (major > GLIBC_MAX[0] || (major === GLIBC_MAX[0] && minor > GLIBC_MAX[1]))
      problems.push(`${m[2]}@GLIBC_${m[1]}`);
  }
  const dyn = execFileSync(objdump, ['-p', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  for (const m of dyn.matchAll(/^\s*NEEDED\s+(\S+)/gm)) {
    const so = m[1];
    if (!GLIBC_LIBS.has(so) && !(libDir && fs.existsSync(path.join(libDir, so))))
      problems.push(`needs ${so}, which is neither glibc's nor in lib/`);
  }
  return problems;
}

test('layout: bootstrap at the root, bin/, lua/, lib/', { skip }, () => {
  const files = walk(OPT);
  assert.ok(files.includes('bootstrap'), files.join(' '));
  assert.ok(files.includes('bin/murmur-ddb'));
  assert.ok(files.includes('lua/murmur.lua'));
  for (const exe of ['bootstrap', 'bin/murmur-ddb']) {
    const mode = fs.statSync(path.join(OPT, exe)).mode & 0o777;
    assert.equal(mode, 0o755, `${exe} mode ${mode.toString(8)}`);
  }
  const libs = files.filter((f) => f.startsWith('lib/'));
  for (const f of libs) {
    assert.match(f, /^lib\/[^/]+\.so(\.[0-9]+)*$/, f);
    assert.ok(isElf(path.join(OPT, f)), `${f} is not an ELF file`);
    assert.ok(!GLIBC_LIBS.has(path.basename(f)), `${f}: glibc's libraries are the host's`);
  }
  // Lambda's limits: 50 MB zipped for a direct upload, 250 MB unzipped for
  // the function and all its layers (keep most of that for the user).
  assert.ok(fs.statSync(ZIP).size < 50e6, `zip is ${fs.statSync(ZIP).size} bytes`);
  const unpacked = files.reduce((n, f) => n + fs.statSync(path.join(OPT, f)).size, 0);
  assert.ok(unpacked < 50e6, `unpacked layer is ${unpacked} bytes`);
  // Only those top-level entries.
  assert.deepEqual([...new Set(files.map((f) => f.split('/')[0]))].sort(),
    libs.length ? ['bin', 'bootstrap', 'lib', 'lua'] : ['bin', 'bootstrap', 'lua']);
  // Lua and lua-cjson are linked in, not loaded.
  assert.ok(!libs.some((f) => /lua/i.test(f)), libs.join(' '));
  // The binaries find lib/ themselves (DT_RPATH, searched before
  // LD_LIBRARY_PATH); without lib/ they need glibc's libraries only.
  const dyn = (f) => execFileSync(OBJDUMP, ['-p', path.join(OPT, f)], { encoding: 'utf8' });
  const rp = (f) => /^\s*RPATH\s+(\S+)/m.exec(dyn(f));
  if (libs.length) {
    assert.equal(rp('bootstrap')?.[1], '$ORIGIN/lib');
    assert.equal(rp('bin/murmur-ddb')?.[1], '$ORIGIN/../lib');
  } else {
    for (const exe of ['bootstrap', 'bin/murmur-ddb']) {
      const needed = [...dyn(exe).matchAll(/^\s*NEEDED\s+(\S+)/gm)].map((m) => m[1]);
      assert.ok(needed.length > 0 && needed.every((so) => GLIBC_LIBS.has(so)), `${exe}: ${needed.join(' ')}`);
    }
  }
});

test(`glibc: no ELF file needs a symbol version above GLIBC_${GLIBC_MAX.join('.')}`, { skip }, () => {
  const elves = walk(OPT).filter((f) => isElf(path.join(OPT, f)));
  assert.ok(elves.length >= 2, elves.join(' '));
  const report = [];
  for (const f of elves) {
    const m = elfMachine(path.join(OPT, f));
    if (m !== MACHINE) report.push(`${f}: ELF machine ${m}, not ${ARCH}'s ${MACHINE}`);
    for (const p of glibcProblems(path.join(OPT, f), path.join(OPT, 'lib'))) report.push(`${f}: ${p}`);
  }
  assert.deepEqual(report, []);
});

test('glibc: the checker rejects a binary that needs GLIBC_2.36', { skip }, (t) => {
  const cc = ['cc', 'gcc'].find((c) => {
    try { execFileSync(c, ['--version'], { stdio: 'ignore' }); return true; } catch { return false; }
  });
  if (!cc) return t.skip('no C compiler');
  // arc4random appeared in glibc 2.36; the host must be at least that new.
  const glibc = execFileSync('getconf', ['GNU_LIBC_VERSION'], { encoding: 'utf8' }).trim().split(' ')[1];
  const [maj, min] = glibc.split('.').map(Number);
  if (maj < 2 || (maj === 2 && min < 36)) return t.skip(`host glibc ${glibc} is older than 2.36`);
  const src = path.join(WORK, 'new.c');
  const bin = path.join(WORK, 'new');
  fs.writeFileSync(src, '#include <stdlib.h>\nint main(void) { return (int)(arc4random() & 1); }\n');
  execFileSync(cc, ['-o', bin, src]);
  const problems = glibcProblems(bin, null, 'objdump');
  assert.ok(problems.some((p) => p === 'arc4random@GLIBC_2.36'), problems.join('; '));
});

test('loading: every non-glibc library comes from the layer, even with host libraries first', { skip: skipRun }, () => {
  const task = path.join(WORK, 'task-trace');
  fs.mkdirSync(task, { recursive: true });
  /* What the dynamic loader resolves for exe with this LD_LIBRARY_PATH:
   * [[soname, path]]. */
  const trace = (exe, libraryPath) => {
    const env = { LD_TRACE_LOADED_OBJECTS: '1', LD_LIBRARY_PATH: libraryPath };
    let [cmd, args] = runArgs(path.join(OPT, exe));
    // Under qemu-user the variables must reach the guest's loader, not
    // the loader of qemu itself.
    if (EXEC.length && /qemu/.test(path.basename(EXEC[0]))) {
      args = [...Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]), ...args];
      for (const k of Object.keys(env)) delete env[k];
    }
    const out = execFileSync(cmd, args, { env, encoding: 'utf8' });
    const libs = [...out.matchAll(/^\s*(\S+) => (.*?)(?: \(0x[0-9a-f]+\))?$/gm)].map((m) => [m[1], m[2]]);
    assert.ok(libs.some(([so]) => so === 'libc.so.6'), out);
    return libs;
  };
  // The host's own library directory (where it finds libc) first, standing
  // in for AL2023's /lib64, which may hold libcurl, libssl, ... of other
  // builds.
  const libc = trace('bootstrap', lambdaLibraryPath(OPT, task)).find(([so]) => so === 'libc.so.6');
  assert.ok(libc && libc[1].startsWith('/'), 'libc.so.6 not resolved');
  const hostLib = path.dirname(libc[1]);
  for (const exe of ['bootstrap', 'bin/murmur-ddb']) {
    for (const [so, where] of trace(exe, `${hostLib}:${lambdaLibraryPath(OPT, task)}`)) {
      assert.notEqual(where, 'not found', `${exe}: ${so} not found`);
      if (GLIBC_LIBS.has(so)) assert.ok(!where.startsWith(OPT), `${exe}: ${so} from ${where}`);
      else assert.equal(path.dirname(fs.realpathSync(where)), fs.realpathSync(path.join(OPT, 'lib')),
        `${exe}: ${so} loaded from ${where}`);
    }
  }
});

/*
 * Runs the unpacked bootstrap against the emulator. files: the task
 * directory; env: variables added to lambdaEnv. Resolves to {code,
 * stdout, stderr, t (transcript)}. Bounded: the emulator ends by itself
 * (--timeout, --linger); the bootstrap, blocked in /next, is then killed.
 */
function runBootstrap({ scenario, files, env = {} }) {
  return runBootstrapWith({
    scenario,
    files,
    parent: WORK,
    command: runArgs(path.join(OPT, 'bootstrap')),
    env: (port, task) => lambdaEnv(OPT, task, { AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`, ...env }),
  });
}

const decode = fs.readFileSync(path.join(EXAMPLE, 'decode.lua'), 'utf8');
const exampleEvent = path.join(EXAMPLE, 'event.json');

test('end to end: the unpacked bootstrap serves the Runtime API with only Lambda\'s environment', { skip: skipRun }, async () => {
  const r = await runBootstrap({
    files: { 'decode.lua': decode },
    scenario: { invocations: [
      { event: exampleEvent, requestId: 'layer-1', deadlineInMs: 10000 },
      { eventRaw: 'not json', requestId: 'layer-2' },
      { event: exampleEvent, requestId: 'layer-3', deadlineInMs: 10000 },
    ] },
  });
  assert.equal(r.t.ended, 'complete', r.stderr);
  const [a, b, c] = r.t.invocations;
  assert.equal(a.outcome, 'response', r.stderr);
  assert.deepEqual(a.response.body, { batchItemFailures: [] });
  assert.equal(b.outcome, 'error');
  assert.equal(b.error.errorType, 'Runtime.InvalidJSON');
  assert.deepEqual(c.response.body, { batchItemFailures: [] });
  // The layer's own lua/ was used, found beside the bootstrap.
  assert.match(r.stderr, new RegExp(`lua ${OPT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/lua\\b`), r.stderr);
  // One EMF line per invocation that ran the pipeline: 8 records, the
  // poison pill counted, nothing reported.
  const emf = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((o) => o._aws);
  assert.equal(emf.length, 2, r.stdout);
  for (const m of emf) {
    assert.equal(m.pipeline, 'order_totals');
    assert.equal(m.Records, 8);
    assert.equal(m.Applied, 7);
    assert.equal(m.DecodeErrors, 1);
    assert.equal(m.DeadLetters, 0);
  }
  assert.match(r.stderr, /decode\.lua:16: order o-1004 has no customer_id/);
  for (const secret of ['layer-check-secret-never-logged', 'layer-check-token-never-logged'])
    assert.ok(!r.stderr.includes(secret) && !r.stdout.includes(secret), 'a credential was logged');
});

test('end to end: a syntax error in decode.lua is an init error naming decode.lua:LINE', { skip: skipRun }, async () => {
  const r = await runBootstrap({
    files: { 'decode.lua': 'return {\n  aggregate = "count",\n  decode = function(rec) return rec end\n  key = function(o) return "k" end,\n}\n' },
    scenario: { invocations: [{ event: exampleEvent }] },
  });
  assert.equal(r.t.ended, 'initError', r.stderr);
  assert.equal(r.code, 1);
  assert.equal(r.t.initError.errorType, 'Function.InvalidScript');
  assert.match(r.t.initError.body.errorMessage, /^decode\.lua:4: /);
});

test('the layer\'s bin/murmur-ddb runs the example in Lambda\'s environment', { skip: skipRun }, () => {
  const task = fs.mkdtempSync(path.join(WORK, 'cli-'));
  const db = path.join(task, 'state.db');
  const env = lambdaEnv(OPT, task, {});
  const run = (args, opts) => {
    const [cmd, a] = runArgs(path.join(OPT, 'bin/murmur-ddb'), args);
    return execFileSync(cmd, a, opts);
  };
  const response = run(['invoke', '--script', path.join(EXAMPLE, 'decode.lua'), '--event', exampleEvent,
    '--store', `sqlite://${db}`, '--dedup', `sqlite://${db}`], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const expected = fs.readFileSync(path.join(EXAMPLE, 'expected.txt'), 'utf8').trim().split('\n');
  const rows = [];
  for (const line of expected.slice(1)) {
    const key = JSON.parse(line).key;
    rows.push(...run(['query', '--store', `sqlite://${db}`, key], { env, encoding: 'utf8' })
      .trim().split('\n'));
  }
  assert.deepEqual([response.trim(), ...rows], expected);
});
