// Drives a real tunewire server from Go: concurrent workers that obey stop decisions,
// then the documented status codes for bad input.
// Needs TUNEWIRE_TARGET and TUNEWIRE_TOKEN; `bash scripts/clients_test.sh` sets them.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "tunewire/v1"
)

const (
	workers   = 4
	trials    = 12
	steps     = 5
	bound     = 0.5
	afterStep = 2
)

// The loss falls with the steps, so a trial is above the bound at step afterStep
// exactly when x + 1/30 > bound, and then the threshold rule stops it at that step.
func lossAt(params map[string]interface{}, step int64) float64 {
	return params["x"].(float64) + 0.1/float64(step+1)
}

func stopsEarly(params map[string]interface{}) bool { return lossAt(params, afterStep) > bound }

func studySpec(maxTrials int32, earlyStopping bool) *pb.StudySpec {
	spec := &pb.StudySpec{
		Parameters: []*pb.ParameterSpec{
			{Name: "x", Domain: &pb.ParameterSpec_FloatRange{FloatRange: &pb.FloatRange{
				MinValue: 0, MaxValue: 1}}},
			{Name: "units", Domain: &pb.ParameterSpec_IntegerRange{IntegerRange: &pb.IntegerRange{
				MinValue: 8, MaxValue: 256, Scale: pb.Scale_SCALE_LOG}}},
			{Name: "optimizer", Domain: &pb.ParameterSpec_Categorical{Categorical: &pb.Categorical{
				Values: []string{"sgd", "adam"}}}},
		},
		Metrics:   []*pb.MetricSpec{{Name: "loss", Goal: pb.Goal_GOAL_MINIMIZE}},
		Algorithm: "random",
		Seed:      42,
		MaxTrials: maxTrials,
	}
	if earlyStopping {
		spec.EarlyStopping = &pb.EarlyStoppingPolicy{Rule: &pb.EarlyStoppingPolicy_Threshold{
			Threshold: &pb.ThresholdRule{Bound: bound, AfterStep: afterStep}}}
	}
	return spec
}

func params(x float64) map[string]*pb.ParameterValue {
	return map[string]*pb.ParameterValue{
		"x":         {Kind: &pb.ParameterValue_NumberValue{NumberValue: x}},
		"units":     {Kind: &pb.ParameterValue_IntegerValue{IntegerValue: 32}},
		"optimizer": {Kind: &pb.ParameterValue_StringValue{StringValue: "adam"}},
	}
}

func runID(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func connect(t *testing.T, token string) (context.Context, pb.TuningServiceClient) {
	t.Helper()
	target := os.Getenv("TUNEWIRE_TARGET")
	if target == "" || os.Getenv("TUNEWIRE_TOKEN") == "" {
		t.Fatal("set TUNEWIRE_TARGET and TUNEWIRE_TOKEN (or run: bash scripts/clients_test.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, err := Dial(dialCtx, target, token, nil)
	if err != nil {
		t.Fatalf("cannot connect to %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return ctx, pb.NewTuningServiceClient(conn)
}

// wantCode fails the test unless err carries the gRPC status code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: want %v, got %v (%v)", what, want, got, err)
	}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func TestTokenIsRequired(t *testing.T) {
	for _, wrong := range []string{"", "not-the-token"} {
		ctx, client := connect(t, wrong)
		_, err := client.ListStudies(ctx, &pb.ListStudiesRequest{})
		wantCode(t, "ListStudies with token "+wrong, err, codes.Unauthenticated)
	}
}

func TestWorkersObeyStopDecisions(t *testing.T) {
	ctx, client := connect(t, os.Getenv("TUNEWIRE_TOKEN"))
	run := runID(t)
	name := "go-study-" + run
	created := must[*pb.CreateStudyResponse](t, "CreateStudy")(client.CreateStudy(ctx,
		&pb.CreateStudyRequest{Name: name, Spec: studySpec(trials, true)}))
	if !created.Created || created.Study.State != pb.StudyState_STUDY_STATE_ACTIVE {
		t.Fatalf("CreateStudy: %v", created)
	}
	again := must[*pb.CreateStudyResponse](t, "CreateStudy again")(client.CreateStudy(ctx,
		&pb.CreateStudyRequest{Name: name, Spec: studySpec(trials, true)}))
	if again.Created {
		t.Error("CreateStudy with the same spec should return the existing study")
	}
	// Two trials by hand (suggested first) make sure both outcomes occur.
	for _, x := range []float64{0.1, 0.9} {
		added := must[*pb.AddTrialResponse](t, "AddTrial")(client.AddTrial(ctx,
			&pb.AddTrialRequest{StudyName: name, Parameters: params(x)}))
		if added.Trial.State != pb.TrialState_TRIAL_STATE_REQUESTED {
			t.Errorf("AddTrial: state %v", added.Trial.State)
		}
	}

	var mu sync.Mutex
	reports := 0
	train := func(p map[string]interface{}, step int64) (map[string]float64, error) {
		mu.Lock()
		reports++
		mu.Unlock()
		return map[string]float64{"loss": lossAt(p, step), "accuracy": 1 - lossAt(p, step)}, nil
	}
	finished := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := "go-" + run + "-" + string(rune('a'+i))
			finished[i], errs[i] = RunWorker(ctx, client, name, id, train, steps)
		}(i)
	}
	wg.Wait()
	var all []int64
	busy := 0
	for i := range finished {
		if errs[i] != nil {
			t.Fatalf("worker %d: %v", i, errs[i])
		}
		all = append(all, finished[i]...)
		if len(finished[i]) > 0 {
			busy++
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, id := range all {
		if id != int64(i+1) || len(all) != trials {
			t.Fatalf("finished trials %v, want 1..%d once each", all, trials)
		}
	}
	if busy < 2 {
		t.Errorf("only %d worker(s) got trials", busy)
	}

	study := must[*pb.GetStudyResponse](t, "GetStudy")(client.GetStudy(ctx,
		&pb.GetStudyRequest{Name: name})).Study
	if study.State != pb.StudyState_STUDY_STATE_COMPLETED {
		t.Errorf("study state %v", study.State)
	}
	list := must[*pb.ListTrialsResponse](t, "ListTrials")(client.ListTrials(ctx,
		&pb.ListTrialsRequest{StudyName: name}))
	if len(list.Trials) != trials {
		t.Fatalf("ListTrials: %d trials", len(list.Trials))
	}
	stopped, expectedReports := 0, 0
	lowest := math.Inf(1)
	for _, tr := range list.Trials {
		p := ParameterValues(tr.Parameters)
		var got []int64
		for _, m := range tr.Measurements {
			got = append(got, m.Step)
		}
		if !strings.HasPrefix(tr.WorkerId, "go-"+run+"-") {
			t.Errorf("trial %d: worker %q", tr.Id, tr.WorkerId)
		}
		if stopsEarly(p) {
			stopped++
			// The worker stopped at the decision: no report after step afterStep.
			if tr.State != pb.TrialState_TRIAL_STATE_STOPPED_EARLY || tr.StopDecision.GetRule() != "threshold" ||
				tr.StopDecision.GetStep() != afterStep || !reflect.DeepEqual(got, []int64{0, 1, 2}) {
				t.Errorf("trial %d (x=%v): %v, stop %v, steps %v", tr.Id, p["x"], tr.State, tr.StopDecision, got)
			}
		} else if tr.State != pb.TrialState_TRIAL_STATE_COMPLETED || !reflect.DeepEqual(got, []int64{0, 1, 2, 3, 4}) {
			t.Errorf("trial %d (x=%v): %v, steps %v", tr.Id, p["x"], tr.State, got)
		}
		final := tr.FinalMeasurement.GetMetrics()["loss"]
		if math.Abs(final-lossAt(p, got[len(got)-1])) > 1e-12 {
			t.Errorf("trial %d: final loss %v", tr.Id, final)
		}
		lowest = math.Min(lowest, final)
		expectedReports += len(got)
	}
	counts := study.TrialCounts
	if stopped == 0 || stopped == trials || counts.StoppedEarly != int32(stopped) ||
		counts.Completed != int32(trials-stopped) ||
		counts.Active+counts.Requested+counts.Failed+counts.Lost != 0 {
		t.Errorf("trial counts %v, want %d stopped early", counts, stopped)
	}
	if reports != expectedReports {
		t.Errorf("%d reports sent, %d stored", reports, expectedReports)
	}
	best := must[*pb.ListOptimalTrialsResponse](t, "ListOptimalTrials")(client.ListOptimalTrials(ctx,
		&pb.ListOptimalTrialsRequest{StudyName: name, Count: 1}))
	if best.Trials[0].FinalMeasurement.Metrics["loss"] != lowest {
		t.Errorf("best trial %v, lowest loss %v", best.Trials[0], lowest)
	}
	more := must[*pb.SuggestTrialsResponse](t, "SuggestTrials")(client.SuggestTrials(ctx,
		&pb.SuggestTrialsRequest{StudyName: name, Count: 1, WorkerId: "late"}))
	if !more.StudyDone || len(more.Trials) != 0 {
		t.Errorf("a finished study handed out %v", more)
	}
	_, err := client.ResumeStudy(ctx, &pb.ResumeStudyRequest{Name: name})
	wantCode(t, "ResumeStudy on a completed study", err, codes.FailedPrecondition)
}

func TestBadInputStatusCodes(t *testing.T) {
	ctx, client := connect(t, os.Getenv("TUNEWIRE_TOKEN"))
	name := "go-codes-" + runID(t)
	spec := studySpec(0, false)
	must[*pb.CreateStudyResponse](t, "CreateStudy")(client.CreateStudy(ctx,
		&pb.CreateStudyRequest{Name: name, Spec: spec}))

	// Spec errors and name clashes.
	badRange := studySpec(0, false)
	badRange.Parameters[0].Domain = &pb.ParameterSpec_FloatRange{FloatRange: &pb.FloatRange{MinValue: 1, MaxValue: 1}}
	_, err := client.CreateStudy(ctx, &pb.CreateStudyRequest{Name: name + "-bad", Spec: badRange})
	wantCode(t, "CreateStudy min >= max", err, codes.InvalidArgument)
	_, err = client.CreateStudy(ctx, &pb.CreateStudyRequest{Name: "no spaces allowed", Spec: spec})
	wantCode(t, "CreateStudy bad name", err, codes.InvalidArgument)
	other := studySpec(0, false)
	other.Seed = 7
	_, err = client.CreateStudy(ctx, &pb.CreateStudyRequest{Name: name, Spec: other})
	wantCode(t, "CreateStudy other spec", err, codes.AlreadyExists)

	// Unknown study or trial.
	_, err = client.GetStudy(ctx, &pb.GetStudyRequest{Name: name + "-missing"})
	wantCode(t, "GetStudy unknown", err, codes.NotFound)
	_, err = client.GetTrial(ctx, &pb.GetTrialRequest{StudyName: name, TrialId: 999})
	wantCode(t, "GetTrial unknown", err, codes.NotFound)
	_, err = client.SuggestTrials(ctx, &pb.SuggestTrialsRequest{StudyName: name + "-missing", Count: 1, WorkerId: "w"})
	wantCode(t, "SuggestTrials unknown study", err, codes.NotFound)

	_, err = client.ListTrials(ctx, &pb.ListTrialsRequest{StudyName: name, PageToken: "not a token"})
	wantCode(t, "ListTrials bad page_token", err, codes.InvalidArgument)

	// Suggest needs a worker id and a sane count.
	_, err = client.SuggestTrials(ctx, &pb.SuggestTrialsRequest{StudyName: name, Count: 1})
	wantCode(t, "SuggestTrials without worker_id", err, codes.InvalidArgument)
	_, err = client.SuggestTrials(ctx, &pb.SuggestTrialsRequest{StudyName: name, Count: 1000, WorkerId: "a"})
	wantCode(t, "SuggestTrials count 1000", err, codes.InvalidArgument)

	got := must[*pb.SuggestTrialsResponse](t, "SuggestTrials")(client.SuggestTrials(ctx,
		&pb.SuggestTrialsRequest{StudyName: name, Count: 1, WorkerId: "a"}))
	id := got.Trials[0].Id
	report := func(worker string, step int64, metrics map[string]float64) (*pb.ReportMeasurementResponse, error) {
		return client.ReportMeasurement(ctx, &pb.ReportMeasurementRequest{StudyName: name, TrialId: id,
			WorkerId: worker, Measurement: &pb.Measurement{Step: step, Metrics: metrics}})
	}
	for what, m := range map[string]map[string]float64{
		"NaN":                {"loss": math.NaN()},
		"infinity":           {"loss": math.Inf(1)},
		"no metrics":         {},
		"not a study metric": {"other": 1},
	} {
		_, err = report("a", 0, m)
		wantCode(t, "ReportMeasurement "+what, err, codes.InvalidArgument)
	}
	_, err = report("a", -1, map[string]float64{"loss": 1})
	wantCode(t, "ReportMeasurement step -1", err, codes.InvalidArgument)
	// Held by worker "a": nobody else may report on it.
	_, err = report("b", 0, map[string]float64{"loss": 1})
	wantCode(t, "ReportMeasurement by another worker", err, codes.FailedPrecondition)
	must[*pb.ReportMeasurementResponse](t, "ReportMeasurement")(report("a", 0, map[string]float64{"loss": 0.5}))
	// The same step again with other values is a conflict; the same values are a retry.
	_, err = report("a", 0, map[string]float64{"loss": 0.7})
	wantCode(t, "ReportMeasurement step again, other values", err, codes.AlreadyExists)
	must[*pb.ReportMeasurementResponse](t, "ReportMeasurement retry")(report("a", 0, map[string]float64{"loss": 0.5}))
	_, err = client.CompleteTrial(ctx, &pb.CompleteTrialRequest{StudyName: name, TrialId: id, WorkerId: "a",
		FinalMeasurement: &pb.Measurement{Metrics: map[string]float64{"other": 1}}})
	wantCode(t, "CompleteTrial without the objective", err, codes.InvalidArgument)
	done := must[*pb.CompleteTrialResponse](t, "CompleteTrial")(client.CompleteTrial(ctx,
		&pb.CompleteTrialRequest{StudyName: name, TrialId: id, WorkerId: "a"}))
	if done.Trial.State != pb.TrialState_TRIAL_STATE_COMPLETED || done.Trial.FinalMeasurement.Metrics["loss"] != 0.5 {
		t.Errorf("CompleteTrial: %v", done.Trial)
	}
	// A finished trial takes no more reports, heartbeats or failures.
	_, err = report("a", 1, map[string]float64{"loss": 0.4})
	wantCode(t, "ReportMeasurement on a finished trial", err, codes.FailedPrecondition)
	_, err = client.Heartbeat(ctx, &pb.HeartbeatRequest{StudyName: name, TrialId: id, WorkerId: "a"})
	wantCode(t, "Heartbeat on a finished trial", err, codes.FailedPrecondition)
	_, err = client.FailTrial(ctx, &pb.FailTrialRequest{StudyName: name, TrialId: id, WorkerId: "a", Reason: "late"})
	wantCode(t, "FailTrial on a finished trial", err, codes.FailedPrecondition)

	// A parameter outside the search space.
	_, err = client.AddTrial(ctx, &pb.AddTrialRequest{StudyName: name, Parameters: params(2)})
	wantCode(t, "AddTrial x=2", err, codes.InvalidArgument)

	// Stop and resume; a stopped study hands out nothing.
	must[*pb.StopStudyResponse](t, "StopStudy")(client.StopStudy(ctx, &pb.StopStudyRequest{Name: name}))
	stopped := must[*pb.SuggestTrialsResponse](t, "SuggestTrials")(client.SuggestTrials(ctx,
		&pb.SuggestTrialsRequest{StudyName: name, Count: 1, WorkerId: "a"}))
	if !stopped.StudyDone {
		t.Errorf("a stopped study is not done: %v", stopped)
	}
	resumed := must[*pb.ResumeStudyResponse](t, "ResumeStudy")(client.ResumeStudy(ctx, &pb.ResumeStudyRequest{Name: name}))
	if resumed.Study.State != pb.StudyState_STUDY_STATE_ACTIVE {
		t.Errorf("ResumeStudy: %v", resumed.Study.State)
	}
	must[*pb.DeleteStudyResponse](t, "DeleteStudy")(client.DeleteStudy(ctx, &pb.DeleteStudyRequest{Name: name}))
	_, err = client.GetStudy(ctx, &pb.GetStudyRequest{Name: name})
	wantCode(t, "GetStudy after delete", err, codes.NotFound)
	_, err = client.DeleteStudy(ctx, &pb.DeleteStudyRequest{Name: name})
	wantCode(t, "DeleteStudy twice", err, codes.NotFound)
}
