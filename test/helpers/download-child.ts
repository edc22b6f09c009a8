// Runs one download() in a child process: the options as JSON in argv[2]; exit 0 when it succeeds,
// else its message on stderr and exit 1. The tests use it where the child needs its own process
// environment, e.g. NODE_EXTRA_CA_CERTS, which Node reads only at start-up.
import { download, DownloadOptions } from '../../lib/download';

download({ quiet: true, ...(JSON.parse(process.argv[2]) as DownloadOptions) }).then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  },
);
