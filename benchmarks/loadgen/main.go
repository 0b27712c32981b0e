// loadgen: bench_service's load generator in Go. Simulated tunewire workers with a
// zero-cost objective, each suggest -> report x N -> complete in a closed loop, on
// their own connection, as remote workers would be. It costs the machine a fraction of
// the CPU of Python's threads, so on a small machine the server, not the load
// generator, is what the benchmark measures.
//
//	loadgen -target 127.0.0.1:50051 -study NAME -workers 64 -seconds 8 [-reports 10]
//
// Prints one JSON object: {"suggest_ms": [...], "report_ms": [...], "errors": N}.
// Built by benchmarks/bench_service.py (GOPATH mode with Debian's grpc-go, as
// scripts/clients_test.sh builds the Go client).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	pb "tunewire/v1"
)

type result struct {
	SuggestMs []float64 `json:"suggest_ms"`
	ReportMs  []float64 `json:"report_ms"`
	Errors    int       `json:"errors"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// work runs one worker until the deadline; its latencies go to out.
func work(ctx context.Context, client pb.TuningServiceClient, study, id string, reports int64,
	stopAt time.Time, out *result) {
	// timed makes one call with a deadline; it returns the call's milliseconds, or
	// false after counting and logging an error (the worker then stops).
	timed := func(name string, rpc func(context.Context) error) (float64, bool) {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		t0 := time.Now()
		if err := rpc(c); err != nil {
			log.Printf("%s: %s: %v", id, name, err)
			out.Errors++
			return 0, false
		}
		return ms(time.Since(t0)), true
	}
	for time.Now().Before(stopAt) {
		var answer *pb.SuggestTrialsResponse
		took, ok := timed("SuggestTrials", func(c context.Context) (err error) {
			answer, err = client.SuggestTrials(c, &pb.SuggestTrialsRequest{
				StudyName: study, Count: 1, WorkerId: id})
			return err
		})
		if !ok {
			return
		}
		out.SuggestMs = append(out.SuggestMs, took)
		for _, trial := range answer.Trials {
			for step := int64(0); step < reports; step++ {
				m := &pb.Measurement{Step: step, Metrics: map[string]float64{"loss": 1 / float64(step+1)}}
				took, ok := timed("ReportMeasurement", func(c context.Context) error {
					_, err := client.ReportMeasurement(c, &pb.ReportMeasurementRequest{
						StudyName: study, TrialId: trial.Id, WorkerId: id, Measurement: m})
					return err
				})
				if !ok {
					return
				}
				out.ReportMs = append(out.ReportMs, took)
			}
			final := &pb.Measurement{Step: reports, Metrics: map[string]float64{"loss": 0.1}}
			if _, ok := timed("CompleteTrial", func(c context.Context) error {
				_, err := client.CompleteTrial(c, &pb.CompleteTrialRequest{
					StudyName: study, TrialId: trial.Id, WorkerId: id, FinalMeasurement: final})
				return err
			}); !ok {
				return
			}
		}
	}
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "server host:port, or several joined by commas (round robin)")
	study := flag.String("study", "", "study name (must exist)")
	workers := flag.Int("workers", 64, "concurrent workers")
	seconds := flag.Float64("seconds", 8, "how long to run")
	reports := flag.Int64("reports", 10, "reports per trial")
	first := flag.Int("first", 0, "number of the first worker id")
	flag.Parse()
	if *study == "" {
		log.Fatal("-study is required")
	}
	targets := strings.Split(*target, ",")
	ctx := context.Background()
	clients := make([]pb.TuningServiceClient, *workers)
	for i := range clients {
		// One connection per worker, as workers on separate machines have; workers are
		// spread over the servers round robin.
		dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := grpc.DialContext(dialCtx, targets[i%len(targets)], grpc.WithInsecure(), grpc.WithBlock())
		cancel()
		if err != nil {
			log.Fatalf("cannot connect to %s: %v", targets[i%len(targets)], err)
		}
		defer conn.Close()
		clients[i] = pb.NewTuningServiceClient(conn)
	}
	stopAt := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	results := make([]result, *workers)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			work(ctx, clients[i], *study, fmt.Sprintf("bench-%d", *first+i), *reports, stopAt, &results[i])
		}(i)
	}
	wg.Wait()
	all := result{SuggestMs: []float64{}, ReportMs: []float64{}}
	for _, r := range results {
		all.SuggestMs = append(all.SuggestMs, r.SuggestMs...)
		all.ReportMs = append(all.ReportMs, r.ReportMs...)
		all.Errors += r.Errors
	}
	if err := json.NewEncoder(os.Stdout).Encode(all); err != nil {
		log.Fatal(err)
	}
}
