// A minimal tunewire client for Node.js: loads protos/ at run time with proto-loader
// (nothing generated), sends the bearer token on every call, and returns promises.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');

// keepCase: fields keep their .proto names (study_name, worker_id); longs as Number
// (trial ids and steps fit easily); enums as their names ('TRIAL_STATE_COMPLETED').
const packageDefinition = protoLoader.loadSync('tunewire/v1/tuning_service.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { TuningService } = grpc.loadPackageDefinition(packageDefinition).tunewire.v1;

/**
 * Connects to a tunewire server.
 *
 * @param {object} options
 * @param {string} options.target host:port of the server, e.g. '127.0.0.1:50051'
 * @param {string} [options.token] bearer token the server was started with (--token)
 * @param {Buffer} [options.rootCert] PEM CA certificate; set it to use TLS
 * @param {number} [options.deadlineSeconds] per-call deadline (default 30)
 * @returns {object} one promise-returning method per RPC, named as in the .proto
 *   (client.SuggestTrials({...}) resolves to the response or rejects with an Error
 *   whose `code` is a grpc.status value), plus close().
 * @example
 *   const client = connect({ target: '127.0.0.1:50051', token: 's3cret' });
 *   const { study } = await client.GetStudy({ name: 'mnist' });
 */
function connect({ target, token = '', rootCert = null, deadlineSeconds = 30 }) {
  const channelCredentials = rootCert
    ? grpc.credentials.createSsl(rootCert)
    : grpc.credentials.createInsecure();
  const stub = new TuningService(target, channelCredentials);
  const client = { close: () => stub.close() };
  for (const method of Object.keys(TuningService.service)) {
    client[method] = (request) =>
      new Promise((resolve, reject) => {
        // Metadata per call rather than call credentials: grpc-js refuses call
        // credentials on an insecure channel, and local tests run without TLS.
        const metadata = new grpc.Metadata();
        if (token) metadata.set('authorization', `Bearer ${token}`);
        const deadline = new Date(Date.now() + deadlineSeconds * 1000);
        stub[method](request, metadata, { deadline }, (err, response) =>
          err ? reject(err) : resolve(response),
        );
      });
  }
  return client;
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/**
 * Runs one worker until the study is done: asks for a trial, trains it step by step
 * while reporting, stops when the server says so, and completes the trial.
 *
 * @param {object} client from connect()
 * @param {string} studyName
 * @param {string} workerId stable id of this worker, e.g. host:gpu0
 * @param {function(object, number): Promise<object>} trainStep given the trial's
 *   parameters (name -> number|string) and the step, resolves to the metrics at that step
 * @param {number} steps steps per trial
 * @returns {Promise<number[]>} ids of the trials this worker finished
 */
async function runWorker(client, studyName, workerId, trainStep, steps) {
  const finished = [];
  for (;;) {
    const answer = await client.SuggestTrials({
      study_name: studyName,
      count: 1,
      worker_id: workerId,
    });
    if (answer.study_done) return finished;
    if (answer.trials.length === 0) {
      await sleep(answer.retry_after_seconds || 0.5);
      continue;
    }
    for (const trial of answer.trials) {
      const params = parameterValues(trial.parameters);
      let metrics = null;
      let lastStep = 0;
      for (let step = 0; step < steps; step++) {
        metrics = await trainStep(params, step);
        lastStep = step;
        const reply = await client.ReportMeasurement({
          study_name: studyName,
          trial_id: trial.id,
          worker_id: workerId,
          measurement: { step, metrics },
        });
        if (reply.should_stop) break; // the trial ends STOPPED_EARLY
      }
      await client.CompleteTrial({
        study_name: studyName,
        trial_id: trial.id,
        worker_id: workerId,
        final_measurement: { step: lastStep, metrics },
      });
      finished.push(trial.id);
    }
  }
}

/**
 * A trial's parameters as plain values: {lr: 0.01, optimizer: 'adam', units: 64}. The
 * server sends int parameters, and discrete ones whose values are all whole numbers (batch
 * sizes), as integer_value: they come back as whole Numbers.
 */
function parameterValues(parameters) {
  const out = {};
  for (const [name, value] of Object.entries(parameters)) {
    const v = value[value.kind];
    out[name] = value.kind === 'integer_value' ? Number(v) : v;
  }
  return out;
}

module.exports = { connect, runWorker, parameterValues, grpc, sleep };
