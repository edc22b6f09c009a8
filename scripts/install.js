#!/usr/bin/env node
// npm's `install` hook, kept in plain JavaScript because it must run before anything is compiled.
// In a clone (TypeScript sources and dev dependencies present) it compiles the TypeScript first;
// a published package ships dist/ already. Then it builds the native addon against libtorch.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const run = (args) => {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status === null ? 1 : r.status);
};

const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (fs.existsSync(path.join(root, 'lib', 'index.ts')) && fs.existsSync(tsc)) {
  console.error('xception-torch: compiling TypeScript');
  run([tsc, '-p', path.join(root, 'tsconfig.json')]);
}
if (process.env.XCEPTION_TORCH_SKIP_NATIVE_BUILD === '1') {
  console.error('xception-torch: XCEPTION_TORCH_SKIP_NATIVE_BUILD=1, not building the native addon');
  process.exit(0);
}
run([path.join(root, 'dist', 'scripts', 'build-native.js')]);
