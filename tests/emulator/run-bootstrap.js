'use strict';
/*
 * run-bootstrap.js - one bootstrap run against the Runtime API emulator,
 * shared by tests/emulator/bootstrap.test.js and tests/layer/layer.test.js.
 *
 * runBootstrap({scenario, files, command, env, parent}):
 *   scenario  the emulator scenario (runtime-api.js)
 *   files     {name: text} written into a fresh task directory
 *   command   [cmd, args] that starts the bootstrap (qemu for another
 *             architecture, say)
 *   env       (port, task) => the bootstrap's whole environment
 *   parent    directory for the run's temporary directory (os.tmpdir())
 * Resolves to {code, signal, killed, stdout, stderr, t (transcript)}.
 * Bounded: the emulator ends by itself (--linger, --timeout); the
 * bootstrap, still blocked in /next by then, is killed 150 ms later. The
 * run's directory is removed.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const EMULATOR = path.join(__dirname, 'runtime-api.js');

async function runBootstrap({ scenario, files = {}, command, env, parent = os.tmpdir() }) {
  const dir = fs.mkdtempSync(path.join(parent, 'mm-boot-'));
  try {
    const task = path.join(dir, 'task');
    fs.mkdirSync(task);
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(task, name), text);
    fs.writeFileSync(path.join(dir, 'scenario.json'), JSON.stringify(scenario));
    const transcript = path.join(dir, 'transcript.json');
    const emu = spawn(process.execPath, [EMULATOR, path.join(dir, 'scenario.json'), '--transcript', transcript,
      '--linger', '300', '--timeout', '20000', '--grace', '3000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const emuExit = new Promise((r) => emu.on('exit', r));
    const port = await new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('emulator printed no port')), 10000);
      emu.stdout.on('data', (c) => {
        buf += c;
        if (buf.includes('\n')) { clearTimeout(timer); resolve(JSON.parse(buf.split('\n')[0]).port); }
      });
    });
    const boot = spawn(command[0], command[1], { env: env(port, task), cwd: task, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    boot.stdout.on('data', (c) => { stdout += c; });
    boot.stderr.on('data', (c) => { stderr += c; });
    let killed = false;
    const bootExit = new Promise((r) => boot.on('exit', (code, signal) => r({ code, signal })));
    await emuExit;
    const grace = setTimeout(() => { killed = true; boot.kill('SIGKILL'); }, 150);
    const { code, signal } = await bootExit;
    clearTimeout(grace);
    const t = JSON.parse(fs.readFileSync(transcript, 'utf8'));
    return { code, signal, killed, stdout, stderr, t };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { runBootstrap };
