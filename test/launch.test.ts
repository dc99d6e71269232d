// How Gatehouse is started: `npm start` and the Docker image give Node.js the same options (README, "Memory"),
// so that a server in a container runs as the one measured by `npm run bench` (which reads npm start's).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from './helpers/process.ts';

const read = (file: string) => readFileSync(path.join(PROJECT_ROOT, file), 'utf8');

test('npm start and the Docker image start src/main.ts with the same Node.js options, V8\'s young generation sized among them', (t) => {
  const { scripts } = JSON.parse(read('package.json')) as { scripts: { start: string } };
  const startWords = scripts.start.trim().split(/\s+/);
  t.is(startWords[0], 'node');
  t.is(startWords.at(-1), 'src/main.ts');

  const command = /^CMD (\[.*\])$/m.exec(read('Dockerfile'));
  t.truthy(command, 'the Dockerfile has an exec-form CMD');
  const imageWords = JSON.parse(command![1]!) as string[];
  t.deepEqual(imageWords, startWords);
  t.true(startWords.some((word) => /^--max-semi-space-size=\d+$/.test(word)));
});
