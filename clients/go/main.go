// Example: tunes a toy objective with a tunewire server from Go, four workers at once.
//
//	go run . -target 127.0.0.1:50051 -token s3cret [-study toy-go] [-workers 4]
//
// (build it as scripts/clients_test.sh does; TUNEWIRE_TARGET and TUNEWIRE_TOKEN work too).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"sync"
	"time"

	pb "tunewire/v1"
)

// toySpec: 16 trials; a trial whose loss is still above 0.6 at step 3 is stopped.
func toySpec() *pb.StudySpec {
	return &pb.StudySpec{
		Parameters: []*pb.ParameterSpec{
			{Name: "lr", Domain: &pb.ParameterSpec_FloatRange{FloatRange: &pb.FloatRange{
				MinValue: 1e-4, MaxValue: 1, Scale: pb.Scale_SCALE_LOG}}},
			{Name: "layers", Domain: &pb.ParameterSpec_IntegerRange{IntegerRange: &pb.IntegerRange{
				MinValue: 1, MaxValue: 4}}},
			{Name: "optimizer", Domain: &pb.ParameterSpec_Categorical{Categorical: &pb.Categorical{
				Values: []string{"sgd", "adam"}}}},
		},
		Metrics:   []*pb.MetricSpec{{Name: "loss", Goal: pb.Goal_GOAL_MINIMIZE}},
		Algorithm: "random",
		Seed:      1,
		MaxTrials: 16,
		EarlyStopping: &pb.EarlyStoppingPolicy{Rule: &pb.EarlyStoppingPolicy_Threshold{
			Threshold: &pb.ThresholdRule{Bound: 0.6, AfterStep: 3}}},
	}
}

// toyTrain stands in for training: the loss falls with the steps, fastest near lr = 0.01.
func toyTrain(params map[string]interface{}, step int64) (map[string]float64, error) {
	distance := math.Abs(math.Log10(params["lr"].(float64))+2) / 2
	penalty := 0.1
	if params["optimizer"] == "adam" {
		penalty = 0
	}
	loss := distance + penalty + 1/float64(step+1) + 0.02*float64(params["layers"].(int64))
	return map[string]float64{"loss": loss}, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	target := flag.String("target", envOr("TUNEWIRE_TARGET", "127.0.0.1:50051"), "server host:port")
	token := flag.String("token", os.Getenv("TUNEWIRE_TOKEN"), "bearer token")
	study := flag.String("study", "toy-go", "study name")
	workers := flag.Int("workers", 4, "concurrent workers")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, err := Dial(dialCtx, *target, *token, nil)
	if err != nil {
		log.Fatalf("cannot connect to %s: %v", *target, err)
	}
	defer conn.Close()
	client := pb.NewTuningServiceClient(conn)

	created, err := client.CreateStudy(ctx, &pb.CreateStudyRequest{Name: *study, Spec: toySpec()})
	if err != nil {
		log.Fatalf("CreateStudy: %v", err)
	}
	fmt.Printf("study %s created=%v\n", *study, created.Created)

	var wg sync.WaitGroup
	errs := make([]error, *workers)
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("go-worker-%d", i)
			var ids []int64
			ids, errs[i] = RunWorker(ctx, client, *study, id, toyTrain, 8)
			fmt.Printf("%s finished trials %v\n", id, ids)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			log.Fatal(err)
		}
	}
	got, err := client.GetStudy(ctx, &pb.GetStudyRequest{Name: *study})
	if err != nil {
		log.Fatalf("GetStudy: %v", err)
	}
	fmt.Printf("state %v; trials %v\n", got.Study.State, got.Study.TrialCounts)
	best, err := client.ListOptimalTrials(ctx, &pb.ListOptimalTrialsRequest{StudyName: *study, Count: 1})
	if err != nil {
		log.Fatalf("ListOptimalTrials: %v", err)
	}
	if len(best.Trials) > 0 {
		t := best.Trials[0]
		fmt.Printf("best trial %d: loss %.4f %v\n", t.Id, t.FinalMeasurement.Metrics["loss"],
			ParameterValues(t.Parameters))
	}
}
