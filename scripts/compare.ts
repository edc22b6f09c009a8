// `xception-torch compare` from a clone, without building: npx ts-node scripts/compare.ts [options]
// (the same options; `npm run compare -- --quick`).
import { main } from '../lib/cli';

main(['compare', ...process.argv.slice(2)]).then((code) => {
  process.exitCode = code;
});
