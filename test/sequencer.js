// The order jest starts suites in. With its timings cached (after a first run here) jest runs the
// slowest first; without them (a fresh clone, as CI has) it orders by file size, which put
// kill-resume (a short file that starts about 40 training runs) last, alone on one worker while the
// other waited. The suites below start first, longest first; the rest keep jest's own order.
const path = require('path');
const Sequencer = require('@jest/test-sequencer').default;

// Seconds each took alone on the project's 2-core machine (2026-12-03). Only the order uses them.
const LONGEST = {
  distributed: 310, 'kill-resume': 240, trainer: 106, compare: 97, 'image-folder': 95, parity: 92, 'cli-train': 88,
  folding: 78, weights: 67,
};

class LongestFirst extends Sequencer {
  sort(tests) {
    const sorted = super.sort(tests);
    if (sorted.some((test) => test.duration != null)) return sorted;
    const seconds = (test) => LONGEST[path.basename(test.path, '.test.ts')] ?? 0;
    return [...sorted].sort((a, b) => seconds(b) - seconds(a));
  }
}

module.exports = LongestFirst;
