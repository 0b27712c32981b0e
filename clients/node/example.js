#!/usr/bin/env node
// Example: tunes a toy objective with a tunewire server from Node.js, four workers at once.
//   node example.js --target 127.0.0.1:50051 --token s3cret [--study toy-node] [--workers 4]
// (TUNEWIRE_TARGET and TUNEWIRE_TOKEN work too.)
'use strict';

const { parseArgs } = require('node:util');
const { connect, runWorker, parameterValues } = require('./tunewire');

const { values: args } = parseArgs({
  options: {
    target: { type: 'string', default: process.env.TUNEWIRE_TARGET || '127.0.0.1:50051' },
    token: { type: 'string', default: process.env.TUNEWIRE_TOKEN || '' },
    study: { type: 'string', default: 'toy-node' },
    workers: { type: 'string', default: '4' },
  },
});

// A study of 16 trials; a trial whose loss is still above 0.6 at step 3 is stopped.
const spec = {
  parameters: [
    { name: 'lr', float_range: { min_value: 1e-4, max_value: 1, scale: 'SCALE_LOG' } },
    { name: 'layers', integer_range: { min_value: 1, max_value: 4 } },
    { name: 'optimizer', categorical: { values: ['sgd', 'adam'] } },
  ],
  metrics: [{ name: 'loss', goal: 'GOAL_MINIMIZE' }],
  algorithm: 'random',
  seed: 1,
  max_trials: 16,
  early_stopping: { threshold: { bound: 0.6, after_step: 3 } },
};

// Stands in for training: the loss falls with the steps, fastest near lr = 0.01.
async function trainStep(params, step) {
  const distance = Math.abs(Math.log10(params.lr) + 2) / 2;
  const penalty = params.optimizer === 'adam' ? 0 : 0.1;
  return { loss: distance + penalty + 1 / (step + 1) + 0.02 * params.layers };
}

async function main() {
  const client = connect({ target: args.target, token: args.token });
  try {
    const { created } = await client.CreateStudy({ name: args.study, spec });
    console.log(`study ${args.study} ${created ? 'created' : 'exists'}`);
    const workers = Array.from({ length: Number(args.workers) }, (_, i) =>
      runWorker(client, args.study, `node-worker-${i}`, trainStep, 8),
    );
    const finished = await Promise.all(workers);
    finished.forEach((ids, i) => console.log(`node-worker-${i} finished trials ${ids}`));
    const { study } = await client.GetStudy({ name: args.study });
    console.log(`state ${study.state}; trials`, study.trial_counts);
    const { trials } = await client.ListOptimalTrials({ study_name: args.study, count: 1 });
    if (trials.length > 0) {
      const best = trials[0];
      console.log(
        `best trial ${best.id}: loss ${best.final_measurement.metrics.loss.toFixed(4)}`,
        parameterValues(best.parameters),
      );
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
