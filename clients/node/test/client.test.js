// Drives a real tunewire server from Node.js: concurrent workers that obey stop
// decisions, then the documented status codes for bad input.
// Needs TUNEWIRE_TARGET and TUNEWIRE_TOKEN; `bash scripts/clients_test.sh` sets them.
'use strict';

const assert = require('node:assert/strict');
const { randomUUID } = require('node:crypto');
const { before, after, describe, test } = require('node:test');
const { connect, runWorker, parameterValues, grpc } = require('../tunewire');

const target = process.env.TUNEWIRE_TARGET;
const token = process.env.TUNEWIRE_TOKEN;
if (!target || !token) {
  throw new Error('set TUNEWIRE_TARGET and TUNEWIRE_TOKEN (or run: bash scripts/clients_test.sh)');
}

const WORKERS = 4;
const TRIALS = 12;
const STEPS = 5;
const BOUND = 0.5;
const AFTER_STEP = 2;

// The loss falls with the steps, so a trial is above the bound at step AFTER_STEP
// exactly when x + 1/30 > BOUND, and then the threshold rule stops it at that step.
const lossAt = (params, step) => params.x + 0.1 / (step + 1);
const stopsEarly = (params) => lossAt(params, AFTER_STEP) > BOUND;

function studySpec(overrides = {}) {
  return {
    parameters: [
      { name: 'x', float_range: { min_value: 0, max_value: 1 } },
      { name: 'units', integer_range: { min_value: 8, max_value: 256, scale: 'SCALE_LOG' } },
      { name: 'optimizer', categorical: { values: ['sgd', 'adam'] } },
    ],
    metrics: [{ name: 'loss', goal: 'GOAL_MINIMIZE' }],
    algorithm: 'random',
    seed: 42,
    max_trials: TRIALS,
    early_stopping: { threshold: { bound: BOUND, after_step: AFTER_STEP } },
    ...overrides,
  };
}

/** Asserts that the promise rejects with the gRPC status `code`; returns the error. */
async function rejectsWith(promise, code) {
  const err = await promise.then(
    () => assert.fail(`expected status ${code}, the call succeeded`),
    (e) => e,
  );
  assert.equal(err.code, code, `expected status ${code}, got ${err.code}: ${err.details}`);
  return err;
}

describe('tunewire from Node.js', () => {
  let client;
  const run = randomUUID().slice(0, 8);

  before(() => {
    client = connect({ target, token });
  });
  after(() => client.close());

  test('a call without the token, or with a wrong one, is UNAUTHENTICATED', async () => {
    for (const wrong of ['', 'not-the-token']) {
      const other = connect({ target, token: wrong });
      try {
        await rejectsWith(other.ListStudies({}), grpc.status.UNAUTHENTICATED);
      } finally {
        other.close();
      }
    }
  });

  test('concurrent workers run a study; stop decisions are obeyed', async () => {
    const name = `node-study-${run}`;
    const created = await client.CreateStudy({ name, spec: studySpec() });
    assert.equal(created.created, true);
    assert.equal(created.study.state, 'STUDY_STATE_ACTIVE');
    // CreateStudy is idempotent for the same spec.
    assert.equal((await client.CreateStudy({ name, spec: studySpec() })).created, false);

    // Two trials by hand (suggested first) make sure both outcomes occur.
    for (const x of [0.1, 0.9]) {
      const { trial } = await client.AddTrial({
        study_name: name,
        parameters: {
          x: { number_value: x },
          units: { integer_value: 32 },
          optimizer: { string_value: 'adam' },
        },
      });
      assert.equal(trial.state, 'TRIAL_STATE_REQUESTED');
    }

    let reports = 0;
    const trainStep = async (params, step) => {
      reports += 1;
      return { loss: lossAt(params, step), accuracy: 1 - lossAt(params, step) };
    };
    const finished = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        runWorker(client, name, `node-${run}-${i}`, trainStep, STEPS),
      ),
    );
    const finishedIds = finished.flat().sort((a, b) => a - b);
    assert.deepEqual(finishedIds, Array.from({ length: TRIALS }, (_, i) => i + 1));
    assert.ok(finished.filter((ids) => ids.length > 0).length >= 2, 'work was shared');

    const { study } = await client.GetStudy({ name });
    assert.equal(study.state, 'STUDY_STATE_COMPLETED');
    const { trials } = await client.ListTrials({ study_name: name });
    assert.equal(trials.length, TRIALS);
    const expectStopped = trials.filter((t) => stopsEarly(parameterValues(t.parameters)));
    assert.ok(expectStopped.length > 0 && expectStopped.length < TRIALS);
    const counts = study.trial_counts;
    assert.equal(counts.stopped_early, expectStopped.length);
    assert.equal(counts.completed, TRIALS - expectStopped.length);
    assert.equal(counts.active + counts.requested + counts.failed + counts.lost, 0);

    let expectedReports = 0;
    for (const t of trials) {
      const params = parameterValues(t.parameters);
      const steps = t.measurements.map((m) => m.step);
      assert.equal(t.worker_id.startsWith(`node-${run}-`), true);
      if (stopsEarly(params)) {
        // The worker stopped at the decision: no report after step AFTER_STEP.
        assert.equal(t.state, 'TRIAL_STATE_STOPPED_EARLY', `trial ${t.id}`);
        assert.equal(t.stop_decision.rule, 'threshold');
        assert.equal(t.stop_decision.step, AFTER_STEP);
        assert.deepEqual(steps, [0, 1, 2]);
      } else {
        assert.equal(t.state, 'TRIAL_STATE_COMPLETED', `trial ${t.id}`);
        assert.deepEqual(steps, [0, 1, 2, 3, 4]);
      }
      assert.ok(Math.abs(t.final_measurement.metrics.loss - lossAt(params, steps.at(-1))) < 1e-12);
      expectedReports += steps.length;
    }
    assert.equal(reports, expectedReports);

    const best = (await client.ListOptimalTrials({ study_name: name, count: 1 })).trials[0];
    const lowest = Math.min(...trials.map((t) => t.final_measurement.metrics.loss));
    assert.equal(best.final_measurement.metrics.loss, lowest);
    // A finished study hands out nothing more.
    const more = await client.SuggestTrials({ study_name: name, count: 1, worker_id: 'late' });
    assert.equal(more.study_done, true);
    assert.equal(more.trials.length, 0);
    await rejectsWith(client.ResumeStudy({ name }), grpc.status.FAILED_PRECONDITION);
  });

  test('bad input gets the documented status codes', async () => {
    const { INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION } = grpc.status;
    const name = `node-codes-${run}`;
    const spec = studySpec({ max_trials: 0, early_stopping: null });
    await client.CreateStudy({ name, spec });

    // Spec errors and name clashes.
    const badRange = studySpec({
      parameters: [{ name: 'x', float_range: { min_value: 1, max_value: 1 } }],
    });
    await rejectsWith(client.CreateStudy({ name: `${name}-bad`, spec: badRange }), INVALID_ARGUMENT);
    await rejectsWith(client.CreateStudy({ name: 'no spaces allowed', spec }), INVALID_ARGUMENT);
    await rejectsWith(client.CreateStudy({ name, spec: { ...spec, seed: 7 } }), ALREADY_EXISTS);

    // Unknown study or trial.
    await rejectsWith(client.GetStudy({ name: `${name}-missing` }), NOT_FOUND);
    await rejectsWith(client.GetTrial({ study_name: name, trial_id: 999 }), NOT_FOUND);
    await rejectsWith(
      client.SuggestTrials({ study_name: `${name}-missing`, count: 1, worker_id: 'w' }),
      NOT_FOUND,
    );

    await rejectsWith(
      client.ListTrials({ study_name: name, page_token: 'not a token' }),
      INVALID_ARGUMENT,
    );

    // Suggest needs a worker id and a sane count.
    await rejectsWith(client.SuggestTrials({ study_name: name, count: 1 }), INVALID_ARGUMENT);
    await rejectsWith(
      client.SuggestTrials({ study_name: name, count: 1000, worker_id: 'a' }),
      INVALID_ARGUMENT,
    );

    const { trials } = await client.SuggestTrials({ study_name: name, count: 1, worker_id: 'a' });
    const id = trials[0].id;
    const report = (worker, measurement) =>
      client.ReportMeasurement({ study_name: name, trial_id: id, worker_id: worker, measurement });
    await rejectsWith(report('a', { step: 0, metrics: { loss: NaN } }), INVALID_ARGUMENT);
    await rejectsWith(report('a', { step: 0, metrics: { loss: Infinity } }), INVALID_ARGUMENT);
    await rejectsWith(report('a', { step: 0, metrics: {} }), INVALID_ARGUMENT);
    await rejectsWith(report('a', { step: 0, metrics: { other: 1 } }), INVALID_ARGUMENT);
    await rejectsWith(report('a', { step: -1, metrics: { loss: 1 } }), INVALID_ARGUMENT);
    // Held by worker 'a': nobody else may report on it.
    await rejectsWith(report('b', { step: 0, metrics: { loss: 1 } }), FAILED_PRECONDITION);
    await report('a', { step: 0, metrics: { loss: 0.5 } });
    // The same step again with other values is a conflict; the same values are a retry.
    await rejectsWith(report('a', { step: 0, metrics: { loss: 0.7 } }), ALREADY_EXISTS);
    assert.equal((await report('a', { step: 0, metrics: { loss: 0.5 } })).should_stop, false);
    await rejectsWith(
      client.CompleteTrial({
        study_name: name,
        trial_id: id,
        worker_id: 'a',
        final_measurement: { metrics: { other: 1 } },
      }),
      INVALID_ARGUMENT,
    );
    const done = await client.CompleteTrial({ study_name: name, trial_id: id, worker_id: 'a' });
    assert.equal(done.trial.state, 'TRIAL_STATE_COMPLETED');
    assert.equal(done.trial.final_measurement.metrics.loss, 0.5);
    // A finished trial takes no more reports, heartbeats or failures.
    await rejectsWith(report('a', { step: 1, metrics: { loss: 0.4 } }), FAILED_PRECONDITION);
    await rejectsWith(
      client.Heartbeat({ study_name: name, trial_id: id, worker_id: 'a' }),
      FAILED_PRECONDITION,
    );
    await rejectsWith(
      client.FailTrial({ study_name: name, trial_id: id, worker_id: 'a', reason: 'late' }),
      FAILED_PRECONDITION,
    );

    // A parameter outside the search space.
    await rejectsWith(
      client.AddTrial({
        study_name: name,
        parameters: {
          x: { number_value: 2 },
          units: { integer_value: 32 },
          optimizer: { string_value: 'adam' },
        },
      }),
      INVALID_ARGUMENT,
    );

    // Stop and resume; a stopped study hands out nothing.
    await client.StopStudy({ name });
    const stopped = await client.SuggestTrials({ study_name: name, count: 1, worker_id: 'a' });
    assert.equal(stopped.study_done, true);
    assert.equal((await client.ResumeStudy({ name })).study.state, 'STUDY_STATE_ACTIVE');

    await client.DeleteStudy({ name });
    await rejectsWith(client.GetStudy({ name }), NOT_FOUND);
    await rejectsWith(client.DeleteStudy({ name }), NOT_FOUND);
  });
});
