// Without PyTorch for the reference interpreter the parity tests fail loudly, saying what to install.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { requirePythonTorch } from './helpers/python';

it('fails with the install command when the Python interpreter has no torch', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-py-'));
  const fake = path.join(dir, 'python3');
  fs.writeFileSync(fake, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n", { mode: 0o755 });
  try {
    expect(() => requirePythonTorch(fake)).toThrow(
      /need PyTorch and torchvision in .*python3 \(ModuleNotFoundError: No module named 'torch'\)[\s\S]*sudo apt-get install -y libtorch-dev python3-torchvision/,
    );
    expect(() => requirePythonTorch(path.join(dir, 'no-such-python'))).toThrow(/ENOENT[\s\S]*XCEPTION_TORCH_PYTHON=/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
