package main

import (
	"fmt"
	mathrand "math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// result is one measured phase: one test on one system in one round.
type result struct {
	Round            int     `json:"round"`
	Test             string  `json:"test"`
	System           string  `json:"system"`
	Clients          int     `json:"clients"`
	Leader           string  `json:"leader"`
	LeaderChanged    bool    `json:"leaderChanged"`
	Ops              int64   `json:"ops"`
	Seconds          float64 `json:"seconds"`
	OpsPerSec        float64 `json:"opsPerSec"`
	P50Ms            float64 `json:"p50Ms"`
	P99Ms            float64 `json:"p99Ms"`
	Errors           int64   `json:"errors"`
	LastError        string  `json:"lastError"`
	GenCPUUsPerOp    float64 `json:"genCpuUsPerOp"`
	ServerCPUUsPerOp float64 `json:"serverCpuUsPerOp"`
	// MemberCPUUsPerOp splits ServerCPUUsPerOp by member, starting at the leader and going on in
	// member order: [leader, leader+1, leader+2]. leader+1 is the follower "→ follower" tests use.
	MemberCPUUsPerOp []float64 `json:"memberCpuUsPerOp"`
	// ServerJITCPUUsPerOp is the part of ServerCPUUsPerOp spent by JIT compiler threads (JavaScriptCore's
	// "JITWorker" threads; none in a Go server): a JIT runtime still compiling its hot code is not
	// yet in the steady state a long-running server is in.
	ServerJITCPUUsPerOp float64 `json:"serverJitCpuUsPerOp"`
}

// Phase states, read by every simulated client after each request.
const (
	warmingUp int32 = iota
	measuring
	stopping
)

// errorPause keeps a client whose requests fail at once (refused connection, 503) from spinning
// on a core the servers need; failed requests are counted, never retried.
const errorPause = 10 * time.Millisecond

type clientStats struct {
	latencies []time.Duration
	errors    int64
	lastError string
}

// slot is the member and connection one simulated client uses for the whole phase.
type slot struct{ ep, conn int }

func slots(t test, leader, members, conns int) []slot {
	out := make([]slot, t.clients)
	for i := range out {
		switch t.target {
		case toLeader:
			out[i] = slot{leader, i % conns}
		case toFollower:
			out[i] = slot{(leader + 1) % members, i % conns}
		case toAll:
			out[i] = slot{i % members, (i / members) % conns}
		}
	}
	return out
}

// runPhase runs t's closed loop (one request in flight per client) for warm-up plus duration and
// measures only the window after the warm-up: requests completed in it, their latencies, and the
// CPU time the generator and the servers spent in it.
func runPhase(sys system, pids []int, t test, cfg config) (result, error) {
	leader, err := sys.findLeader()
	if err != nil {
		return result{}, err
	}
	eps := sys.endpoints()
	assigned := slots(t, leader, len(eps), cfg.conns)
	stats := make([]clientStats, t.clients)
	var state int32 = warmingUp
	var wg sync.WaitGroup
	for i := range assigned {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := &stats[i]
			s.latencies = make([]time.Duration, 0, 4096)
			rng := mathrand.New(mathrand.NewSource(time.Now().UnixNano() + int64(i)))
			a := assigned[i]
			for atomic.LoadInt32(&state) != stopping {
				k := rng.Intn(cfg.keys)
				start := time.Now()
				err := sys.do(a.ep, a.conn, t.op, k)
				elapsed := time.Since(start)
				counted := atomic.LoadInt32(&state) == measuring
				if err != nil {
					if counted {
						s.errors++
						s.lastError = err.Error()
					}
					time.Sleep(errorPause)
					continue
				}
				if counted {
					s.latencies = append(s.latencies, elapsed)
				}
			}
		}(i)
	}
	time.Sleep(seconds(cfg.warmupS))
	gen0 := selfCPU()
	srv0, err0 := serverCPU(pids)
	jit0 := jitCPU(pids)
	t0 := time.Now()
	atomic.StoreInt32(&state, measuring)
	time.Sleep(seconds(cfg.durationS))
	atomic.StoreInt32(&state, stopping)
	window := time.Since(t0)
	gen1 := selfCPU()
	srv1, err1 := serverCPU(pids)
	jit1 := jitCPU(pids)
	wg.Wait()
	if err0 != nil || err1 != nil {
		return result{}, fmt.Errorf("server CPU: %v %v (did a server exit?)", err0, err1)
	}

	r := result{Test: t.name, System: sys.name(), Clients: t.clients, Leader: eps[leader], Seconds: window.Seconds()}
	var all []time.Duration
	for i := range stats {
		all = append(all, stats[i].latencies...)
		r.Errors += stats[i].errors
		if stats[i].lastError != "" {
			r.LastError = stats[i].lastError
		}
	}
	r.Ops = int64(len(all))
	r.OpsPerSec = float64(r.Ops) / r.Seconds
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r.P50Ms = percentileMs(all, 0.50)
	r.P99Ms = percentileMs(all, 0.99)
	if r.Ops > 0 {
		perOp := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(r.Ops) }
		r.GenCPUUsPerOp = perOp(gen1 - gen0)
		for i := range pids {
			m := (leader + i) % len(pids)
			used := perOp(srv1[m] - srv0[m])
			r.MemberCPUUsPerOp = append(r.MemberCPUUsPerOp, used)
			r.ServerCPUUsPerOp += used
		}
		if jit1 > jit0 {
			r.ServerJITCPUUsPerOp = perOp(jit1 - jit0)
		}
	}
	after, err := sys.findLeader()
	r.LeaderChanged = err != nil || after != leader
	return r, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// percentileMs is the nearest-rank percentile of sorted latencies, in milliseconds.
func percentileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i].Microseconds()) / 1000
}

// selfCPU is user + system time of this process (all its threads) so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userHz is the unit of utime/stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux ABI Go runs on.
const userHz = 100

// serverCPU is the user + system time of each of the given processes so far.
func serverCPU(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, len(pids))
	for _, pid := range pids {
		used, err := statCPU(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil, err
		}
		out = append(out, used)
	}
	return out, nil
}

// jitCPU is the user + system time so far of the given processes' JIT compiler threads (by thread
// name), summed. A thread that ends inside a window takes its time with it, so a window's share is
// at least what is printed, never more.
func jitCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			dir := fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())
			comm, err := os.ReadFile(dir + "/comm")
			if err != nil || !strings.HasPrefix(string(comm), "JITWorker") {
				continue
			}
			if used, err := statCPU(dir + "/stat"); err == nil {
				sum += used
			}
		}
	}
	return sum
}

// statCPU reads utime + stime from a /proc stat file (a process's or one of its threads').
func statCPU(path string) (time.Duration, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// fields[0] is field 3 (state), so utime (14) and stime (15) are fields[11] and fields[12].
	if len(fields) < 13 {
		return 0, fmt.Errorf("%s: %d fields", path, len(fields))
	}
	var u, st int64
	if _, err := fmt.Sscan(fields[11], &u); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(fields[12], &st); err != nil {
		return 0, err
	}
	return time.Duration(u+st) * time.Second / userHz, nil
}

// exitedMember names the first of pids that has exited (gone, or a zombie not yet reaped).
func exitedMember(pids []int) error {
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return fmt.Errorf("member pid %d has exited", pid)
		}
		s := string(raw)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return fmt.Errorf("member pid %d has exited", pid)
		}
	}
	return nil
}

// waitLeader polls until the system names a leader, up to waitS seconds, and gives up at once
// when one of its members has exited.
func waitLeader(sys system, pids []int, waitS float64) (int, error) {
	deadline := time.Now().Add(seconds(waitS))
	for {
		if err := exitedMember(pids); err != nil {
			return 0, fmt.Errorf("%s: %v", sys.name(), err)
		}
		i, err := sys.findLeader()
		if err == nil {
			progress("%s: leader %s", sys.name(), sys.endpoints()[i])
			return i, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no leader after %.0f s: %v", sys.name(), waitS, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prefill writes every key once, from 64 clients spread over all members, so that every get
// finds a value; a failed write fails the run (a get test would otherwise measure misses).
func prefill(sys system, cfg config) error {
	const clients = 64
	assigned := slots(test{clients: clients, target: toAll}, 0, len(sys.endpoints()), cfg.conns)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a := assigned[i]
			for k := i; k < cfg.keys; k += clients {
				if err := sys.do(a.ep, a.conn, opPut, k); err != nil {
					errs[i] = fmt.Errorf("key %d: %v", k, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// keyName is the key with index k, the same on both systems.
func keyName(k int) string { return fmt.Sprintf("bench/%07d", k) }
