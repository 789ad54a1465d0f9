package spooltest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/edigw/edigw/spool"
)

// ---- poll helpers ----

func beginRun(t *testing.T, s spool.Store, partner, poll, owner string, lease time.Duration) spool.PollRun {
	t.Helper()
	r, err := s.BeginRun(t.Context(), spool.NewRun{Partner: partner, Poll: poll, Owner: owner, Trigger: "schedule"}, lease)
	if err != nil {
		t.Fatalf("BeginRun %s/%s by %s: %v", partner, poll, owner, err)
	}
	return r
}

func finishRun(t *testing.T, s spool.Store, r spool.PollRun) {
	t.Helper()
	if err := s.FinishRun(t.Context(), r); err != nil {
		t.Fatalf("FinishRun %d: %v", r.ID, err)
	}
}

func listRuns(t *testing.T, s spool.Store, f spool.RunFilter) []spool.PollRun {
	t.Helper()
	runs, err := s.ListRuns(t.Context(), f)
	if err != nil {
		t.Fatalf("ListRuns %+v: %v", f, err)
	}
	return runs
}

func runIDs(runs []spool.PollRun) []int64 {
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

func remoteFiles(t *testing.T, s spool.Store, partner, poll string) map[string]spool.RemoteFile {
	t.Helper()
	m, err := s.RemoteFiles(t.Context(), partner, poll)
	if err != nil {
		t.Fatalf("RemoteFiles %s/%s: %v", partner, poll, err)
	}
	return m
}

func putRemote(t *testing.T, s spool.Store, f spool.RemoteFile) {
	t.Helper()
	if err := s.PutRemoteFile(t.Context(), f); err != nil {
		t.Fatalf("PutRemoteFile %s/%s/%s: %v", f.Partner, f.Poll, f.Name, err)
	}
}

// ---- poll tests ----

func testPollRuns(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	r1, err := s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "inbox", Owner: "node-a", Trigger: "manual:ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID == 0 || r1.Partner != "acme" || r1.Poll != "inbox" || r1.Owner != "node-a" || r1.Trigger != "manual:ops" ||
		r1.Status != spool.RunRunning || r1.StartedAt.Before(before) || r1.StartedAt.After(time.Now().Add(time.Second)) ||
		!r1.EndedAt.IsZero() || !r1.LeaseUntil.Equal(r1.StartedAt.Add(time.Hour)) {
		t.Errorf("begun run: %+v", r1)
	}

	// The poll is taken, by whoever asks; the error names the holder.
	for _, owner := range []string{"node-b", "node-a"} {
		_, err = s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "inbox", Owner: owner}, time.Hour)
		wantErr(t, err, spool.ErrPollBusy, "second run of a leased poll by "+owner)
		if err != nil && !strings.Contains(err.Error(), "node-a") {
			t.Errorf("busy error does not name the holder: %v", err)
		}
	}
	// Other polls, of the same partner or another, are free.
	r2 := beginRun(t, s, "acme", "outbox", "node-b", time.Hour)
	r3 := beginRun(t, s, "globex", "inbox", "node-b", time.Hour)

	// ExtendRun moves the lease.
	if err := s.ExtendRun(ctx, r3.ID, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := listRuns(t, s, spool.RunFilter{Partner: "globex"}); len(got) != 1 || !got[0].LeaseUntil.After(r3.LeaseUntil.Add(50*time.Minute)) {
		t.Errorf("after extend: %+v (begun with lease until %v)", got, r3.LeaseUntil)
	}

	// Finishing releases the poll.
	r1.Status, r1.Seen, r1.Fetched, r1.Skipped = spool.RunOK, 5, 3, 2
	finishRun(t, s, r1)
	r4 := beginRun(t, s, "acme", "inbox", "node-b", time.Hour)
	wantErr(t, s.ExtendRun(ctx, r1.ID, time.Hour), spool.ErrLeaseLost, "extend a finished run")

	r2.Status, r2.Seen, r2.Fetched, r2.Failed, r2.Errors = spool.RunPartial, 2, 1, 1, []string{"b.edi: permission denied"}
	finishRun(t, s, r2)
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("connect: attempt %d refused", i)
	}
	r4.Status, r4.Errors = spool.RunFailed, many
	finishRun(t, s, r4)

	// Invalid finishes change nothing.
	for _, st := range []spool.RunStatus{"", spool.RunRunning, spool.RunAbandoned, "done"} {
		bad := r3
		bad.Status = st
		wantErr(t, s.FinishRun(ctx, bad), spool.ErrInvalid, fmt.Sprintf("finish with status %q", st))
	}
	bad := r3
	bad.Status, bad.Seen = spool.RunOK, -1
	wantErr(t, s.FinishRun(ctx, bad), spool.ErrInvalid, "finish with a negative count")
	wantErr(t, s.FinishRun(ctx, spool.PollRun{ID: r4.ID + 1000, Status: spool.RunOK}), spool.ErrNotFound, "finish an unknown run")
	wantErr(t, s.ExtendRun(ctx, r4.ID+1000, time.Hour), spool.ErrLeaseLost, "extend an unknown run")
	wantErr(t, s.ExtendRun(ctx, r3.ID, 0), spool.ErrInvalid, "extend by zero")
	for _, nr := range []spool.NewRun{{Poll: "p", Owner: "o"}, {Partner: "acme", Owner: "o"}, {Partner: "acme", Poll: "p"}} {
		_, err := s.BeginRun(ctx, nr, time.Hour)
		wantErr(t, err, spool.ErrInvalid, fmt.Sprintf("begin %+v", nr))
	}
	_, err = s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "p", Owner: "o"}, 0)
	wantErr(t, err, spool.ErrInvalid, "begin with no lease")

	// Listing: newest first, outcomes round-tripped, filtered.
	all := listRuns(t, s, spool.RunFilter{})
	if diff := cmp.Diff([]int64{r4.ID, r3.ID, r2.ID, r1.ID}, runIDs(all)); diff != "" {
		t.Fatalf("all runs, newest first (-want +got):\n%s", diff)
	}
	got4, got3, got2, got1 := all[0], all[1], all[2], all[3]
	for _, r := range []spool.PollRun{got4, got2, got1} {
		if r.EndedAt.Before(r.StartedAt) || r.EndedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("run %d: started %v, ended %v", r.ID, r.StartedAt, r.EndedAt)
		}
	}
	if !got3.EndedAt.IsZero() || got3.Status != spool.RunRunning {
		t.Errorf("unfinished run: %+v", got3)
	}
	if n := len(got4.Errors); n == 0 || !slices.Equal(got4.Errors, many[:n]) {
		t.Errorf("errors of a run with many: %q, want the first ones of %d", got4.Errors, len(many))
	}
	got1.EndedAt, got2.EndedAt, got4.EndedAt, got4.Errors, r4.Errors = time.Time{}, time.Time{}, time.Time{}, nil, nil
	r3.LeaseUntil = got3.LeaseUntil // extended
	for _, c := range []struct{ want, got spool.PollRun }{{r1, got1}, {r2, got2}, {r3, got3}, {r4, got4}} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("run %d listed (-finished +got):\n%s", c.want.ID, diff)
		}
	}
	for _, c := range []struct {
		f    spool.RunFilter
		want []int64
	}{
		{spool.RunFilter{Partner: "acme"}, []int64{r4.ID, r2.ID, r1.ID}},
		{spool.RunFilter{Partner: "acme", Poll: "inbox"}, []int64{r4.ID, r1.ID}},
		{spool.RunFilter{Poll: "inbox"}, []int64{r4.ID, r3.ID, r1.ID}},
		{spool.RunFilter{Partner: "initech"}, []int64{}},
		{spool.RunFilter{Limit: 2}, []int64{r4.ID, r3.ID}},
		{spool.RunFilter{Partner: "acme", Limit: 1}, []int64{r4.ID}},
	} {
		if diff := cmp.Diff(c.want, runIDs(listRuns(t, s, c.f))); diff != "" {
			t.Errorf("ListRuns %+v (-want +got):\n%s", c.f, diff)
		}
	}
}

func testPollLeaseConcurrent(t *testing.T, h harness) {
	s := h.store(t)
	const racers = 8
	for round := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []spool.PollRun
		for i := range racers {
			owner := fmt.Sprintf("node-%d", i)
			wg.Go(func() {
				r, err := s.BeginRun(t.Context(), spool.NewRun{Partner: "acme", Poll: "inbox", Owner: owner}, time.Hour)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, r)
					mu.Unlock()
				case !errors.Is(err, spool.ErrPollBusy):
					t.Errorf("round %d, %s: %v, want ErrPollBusy", round, owner, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("round %d: %d runs began, want 1: %+v", round, len(won), won)
		}
		runs := listRuns(t, s, spool.RunFilter{Partner: "acme", Poll: "inbox"})
		if len(runs) != round+1 || runs[0].ID != won[0].ID || runs[0].Owner != won[0].Owner {
			t.Fatalf("round %d: runs %+v, winner %+v", round, runs, won[0])
		}
		won[0].Status = spool.RunOK
		finishRun(t, s, won[0])
	}
}

func testPollLeaseExpiry(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	r1 := beginRun(t, s, "acme", "inbox", "dying", lease)
	_, err := s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "inbox", Owner: "rescuer"}, time.Minute)
	wantErr(t, err, spool.ErrPollBusy, "begin under a valid lease")

	time.Sleep(time.Until(r1.LeaseUntil) + 50*time.Millisecond)
	if runs := listRuns(t, s, spool.RunFilter{Poll: "inbox"}); len(runs) != 1 || runs[0].Status != spool.RunRunning {
		t.Errorf("an expired run is running until taken over: %+v", runs)
	}
	r2 := beginRun(t, s, "acme", "inbox", "rescuer", time.Minute)
	runs := listRuns(t, s, spool.RunFilter{Partner: "acme", Poll: "inbox"})
	if len(runs) != 2 || runs[0].ID != r2.ID || runs[1].ID != r1.ID {
		t.Fatalf("runs: %+v", runs)
	}
	old := runs[1]
	if old.Status != spool.RunAbandoned || old.EndedAt.IsZero() || old.EndedAt.Before(r1.StartedAt) ||
		len(old.Errors) != 1 || !strings.Contains(old.Errors[0], "dying") {
		t.Errorf("abandoned run: %+v", old)
	}

	// The first run's late calls: it cannot extend, and finishing records
	// its outcome but does not release the rescuer's lease.
	wantErr(t, s.ExtendRun(ctx, r1.ID, time.Minute), spool.ErrLeaseLost, "late extend")
	r1.Status, r1.Seen, r1.Fetched = spool.RunOK, 1, 1
	finishRun(t, s, r1)
	_, err = s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "inbox", Owner: "third"}, time.Minute)
	wantErr(t, err, spool.ErrPollBusy, "begin after a late finish of the abandoned run")
	if err != nil && !strings.Contains(err.Error(), "rescuer") {
		t.Errorf("busy error does not name the holder: %v", err)
	}
	if got := listRuns(t, s, spool.RunFilter{Partner: "acme"})[1]; got.ID != r1.ID || got.Status != spool.RunOK || got.Seen != 1 || got.Fetched != 1 {
		t.Errorf("late finish not stored: %+v", got)
	}
	r2.Status = spool.RunOK
	finishRun(t, s, r2)
	beginRun(t, s, "acme", "inbox", "third", time.Minute)

	// An expired lease not yet taken over is still the run's.
	slow := beginRun(t, s, "acme", "slow", "slow", 50*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if err := s.ExtendRun(ctx, slow.ID, time.Minute); err != nil {
		t.Errorf("extend an expired but untaken lease: %v", err)
	}
	_, err = s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "slow", Owner: "other"}, time.Minute)
	wantErr(t, err, spool.ErrPollBusy, "begin after the expired lease was extended")
	if runs := listRuns(t, s, spool.RunFilter{Poll: "slow"}); len(runs) != 1 || runs[0].Status != spool.RunRunning {
		t.Errorf("extended run: %+v", runs)
	}
}

func testPollRemoteFiles(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	if m := remoteFiles(t, s, "acme", "inbox"); len(m) != 0 {
		t.Fatalf("fresh store remembers %+v", m)
	}
	fileID := addFile(t, s, "acme").ID
	mod := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	a := spool.RemoteFile{Partner: "acme", Poll: "inbox", Name: "a.edi", Size: 10, ModTime: mod, Since: mod.Add(time.Minute)}
	b := spool.RemoteFile{Partner: "acme", Poll: "inbox", Name: "b.edi", Size: 20, ModTime: mod, Since: mod.Add(time.Minute),
		FileID: fileID, FetchedAt: mod.Add(2 * time.Minute), Done: true}
	// Times are kept as UTC to the microsecond, like every other time.
	zone := time.FixedZone("EST", -5*3600)
	c := spool.RemoteFile{Partner: "acme", Poll: "inbox", Name: "dir/c d.edi", Size: 0,
		ModTime: time.Date(2025, 3, 4, 1, 2, 3, 456789123, zone), Since: time.Date(2025, 3, 4, 1, 2, 4, 999, zone), FileID: fileID}
	otherPoll := a
	otherPoll.Poll, otherPoll.Size = "outbox", 11
	otherPartner := a
	otherPartner.Partner, otherPartner.Size = "globex", 12
	for _, f := range []spool.RemoteFile{a, b, c, otherPoll, otherPartner} {
		putRemote(t, s, f)
	}
	wantC := c
	wantC.ModTime, wantC.Since = c.ModTime.UTC().Truncate(time.Microsecond), c.Since.UTC().Truncate(time.Microsecond)
	got := remoteFiles(t, s, "acme", "inbox")
	if diff := cmp.Diff(map[string]spool.RemoteFile{"a.edi": a, "b.edi": b, c.Name: wantC}, got); diff != "" {
		t.Errorf("remote files (-want +got):\n%s", diff)
	}
	if got := got[c.Name]; got.ModTime.Location() != time.UTC || got.ModTime.Nanosecond() != 456789000 {
		t.Errorf("mod time %v, want UTC to the microsecond", got.ModTime)
	}

	// Replacing: the new values, fetched fields cleared included.
	b2 := b
	b2.Size, b2.ModTime, b2.Since, b2.FileID, b2.FetchedAt, b2.Done = 21, mod.Add(time.Hour), mod.Add(time.Hour), "", time.Time{}, false
	a2 := a
	a2.FileID, a2.FetchedAt = fileID, mod.Add(time.Hour)
	putRemote(t, s, b2)
	putRemote(t, s, a2)
	if diff := cmp.Diff(map[string]spool.RemoteFile{"a.edi": a2, "b.edi": b2, c.Name: wantC}, remoteFiles(t, s, "acme", "inbox")); diff != "" {
		t.Errorf("after replace (-want +got):\n%s", diff)
	}

	// Forgetting: only the named files of that poll; unknown names and an
	// empty list are fine.
	if err := s.ForgetRemoteFiles(ctx, "acme", "inbox", []string{"a.edi", "missing.edi", c.Name}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetRemoteFiles(ctx, "acme", "inbox", nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]spool.RemoteFile{"b.edi": b2}, remoteFiles(t, s, "acme", "inbox")); diff != "" {
		t.Errorf("after forget (-want +got):\n%s", diff)
	}
	for _, want := range []spool.RemoteFile{otherPoll, otherPartner} {
		if diff := cmp.Diff(map[string]spool.RemoteFile{"a.edi": want}, remoteFiles(t, s, want.Partner, want.Poll)); diff != "" {
			t.Errorf("%s/%s (-want +got):\n%s", want.Partner, want.Poll, diff)
		}
	}

	// Many names at once.
	names := make([]string, 1200)
	for i := range names {
		names[i] = fmt.Sprintf("bulk-%04d.edi", i)
	}
	var wg sync.WaitGroup
	for _, n := range []string{names[0], names[700], names[1199], "keep.edi"} {
		f := a
		f.Poll, f.Name = "bulk", n
		wg.Go(func() {
			if err := s.PutRemoteFile(ctx, f); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := s.ForgetRemoteFiles(ctx, "acme", "bulk", names); err != nil {
		t.Fatal(err)
	}
	if m := remoteFiles(t, s, "acme", "bulk"); len(m) != 1 || m["keep.edi"].Name != "keep.edi" {
		t.Errorf("after forgetting %d names: %+v", len(names), m)
	}

	// Invalid input.
	for _, f := range []spool.RemoteFile{
		{Poll: "inbox", Name: "x"}, {Partner: "acme", Name: "x"}, {Partner: "acme", Poll: "inbox"},
		{Partner: "acme", Poll: "inbox", Name: "x", Size: -1},
		{Partner: "acme", Poll: "inbox", Name: "x", FileID: "not-an-id"},
	} {
		wantErr(t, s.PutRemoteFile(ctx, f), spool.ErrInvalid, fmt.Sprintf("put %+v", f))
	}
	_, err := s.RemoteFiles(ctx, "", "inbox")
	wantErr(t, err, spool.ErrInvalid, "remote files without a partner")
	wantErr(t, s.ForgetRemoteFiles(ctx, "acme", "", []string{"b.edi"}), spool.ErrInvalid, "forget without a poll")
	if m := remoteFiles(t, s, "acme", "inbox"); len(m) != 1 {
		t.Errorf("invalid calls changed the memory: %+v", m)
	}
}

func testPollDurability(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	done := beginRun(t, s, "acme", "inbox", "node-a", time.Hour)
	done.Status, done.Seen, done.Failed, done.Errors = spool.RunPartial, 2, 1, []string{"x.edi: timeout"}
	finishRun(t, s, done)
	running := beginRun(t, s, "acme", "inbox", "node-a", time.Hour)
	f := spool.RemoteFile{Partner: "acme", Poll: "inbox", Name: "a.edi", Size: 3, ModTime: time.Now(), Since: time.Now(),
		FileID: addFile(t, s, "acme").ID, FetchedAt: time.Now(), Done: true}
	putRemote(t, s, f)
	wantRuns := listRuns(t, s, spool.RunFilter{})
	wantFiles := remoteFiles(t, s, "acme", "inbox")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = h.store(t)
	if diff := cmp.Diff(wantRuns, listRuns(t, s, spool.RunFilter{})); diff != "" {
		t.Errorf("runs after reopen (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantFiles, remoteFiles(t, s, "acme", "inbox")); diff != "" {
		t.Errorf("remote files after reopen (-before +after):\n%s", diff)
	}
	// The lease survives too: the poll is still busy, and still the run's.
	_, err := s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "inbox", Owner: "node-b"}, time.Hour)
	wantErr(t, err, spool.ErrPollBusy, "begin after reopen")
	if err := s.ExtendRun(ctx, running.ID, time.Hour); err != nil {
		t.Errorf("extend after reopen: %v", err)
	}
	running.Status = spool.RunOK
	finishRun(t, s, running)
	beginRun(t, s, "acme", "inbox", "node-b", time.Hour)
}
