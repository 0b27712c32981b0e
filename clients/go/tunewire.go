// A minimal tunewire client for Go on top of the code generated from protos/ by
// scripts/gen_clients.sh: a connection that sends the bearer token, and a worker loop.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "tunewire/v1"
)

// bearerToken sends `authorization: Bearer <token>` with every call.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only for plaintext connections, which Dial allows
// for local servers and tests; use TLS anywhere a token can be sniffed.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// Dial connects to a tunewire server at target (host:port). An empty token sends none;
// a nil tlsConfig means plaintext.
//
// Example:
//
//	conn, err := Dial(ctx, "127.0.0.1:50051", "s3cret", nil)
//	client := pb.NewTuningServiceClient(conn)
func Dial(ctx context.Context, target, token string, tlsConfig *tls.Config) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithBlock()}
	if tlsConfig != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	} else {
		// grpc-go 1.33 (Debian 12) has no credentials/insecure package yet.
		opts = append(opts, grpc.WithInsecure())
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token, tlsConfig != nil}))
	}
	return grpc.DialContext(ctx, target, opts...)
}

// TrainStep stands in for training: given a trial's parameters and a step, it returns
// the metrics at that step.
type TrainStep func(params map[string]interface{}, step int64) (map[string]float64, error)

// RunWorker asks for trials until the study is done; it trains each step by step,
// reporting every step, stops when the server says so, and completes the trial.
// It returns the ids of the trials it finished.
func RunWorker(ctx context.Context, client pb.TuningServiceClient, study, workerID string,
	train TrainStep, steps int64) ([]int64, error) {
	var finished []int64
	for {
		answer, err := client.SuggestTrials(ctx, &pb.SuggestTrialsRequest{
			StudyName: study, Count: 1, WorkerId: workerID,
		})
		if err != nil {
			return finished, fmt.Errorf("SuggestTrials: %w", err)
		}
		if answer.StudyDone {
			return finished, nil
		}
		if len(answer.Trials) == 0 {
			wait := answer.RetryAfterSeconds
			if wait <= 0 {
				wait = 0.5
			}
			select {
			case <-ctx.Done():
				return finished, ctx.Err()
			case <-time.After(time.Duration(wait * float64(time.Second))):
			}
			continue
		}
		for _, trial := range answer.Trials {
			if err := runTrial(ctx, client, study, workerID, trial, train, steps); err != nil {
				return finished, fmt.Errorf("trial %d: %w", trial.Id, err)
			}
			finished = append(finished, trial.Id)
		}
	}
}

func runTrial(ctx context.Context, client pb.TuningServiceClient, study, workerID string,
	trial *pb.Trial, train TrainStep, steps int64) error {
	params := ParameterValues(trial.Parameters)
	var last *pb.Measurement
	for step := int64(0); step < steps; step++ {
		metrics, err := train(params, step)
		if err != nil {
			_, failErr := client.FailTrial(ctx, &pb.FailTrialRequest{
				StudyName: study, TrialId: trial.Id, WorkerId: workerID, Reason: err.Error(),
			})
			return failErr
		}
		last = &pb.Measurement{Step: step, Metrics: metrics}
		reply, err := client.ReportMeasurement(ctx, &pb.ReportMeasurementRequest{
			StudyName: study, TrialId: trial.Id, WorkerId: workerID, Measurement: last,
		})
		if err != nil {
			return fmt.Errorf("ReportMeasurement: %w", err)
		}
		if reply.ShouldStop {
			break // the trial ends STOPPED_EARLY
		}
	}
	_, err := client.CompleteTrial(ctx, &pb.CompleteTrialRequest{
		StudyName: study, TrialId: trial.Id, WorkerId: workerID, FinalMeasurement: last,
	})
	if err != nil {
		return fmt.Errorf("CompleteTrial: %w", err)
	}
	return nil
}

// ParameterValues turns a trial's parameters into plain values: float64, int64 or string.
// The server sends int parameters, and discrete ones whose values are all whole numbers
// (batch sizes), as integer_value: they come back as int64.
func ParameterValues(parameters map[string]*pb.ParameterValue) map[string]interface{} {
	out := make(map[string]interface{}, len(parameters))
	for name, value := range parameters {
		switch v := value.Kind.(type) {
		case *pb.ParameterValue_NumberValue:
			out[name] = v.NumberValue
		case *pb.ParameterValue_IntegerValue:
			out[name] = v.IntegerValue
		case *pb.ParameterValue_StringValue:
			out[name] = v.StringValue
		}
	}
	return out
}
