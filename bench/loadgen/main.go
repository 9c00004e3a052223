// Command loadgen drives etcd through its native Go client (clientv3, gRPC) and phalanx through an
// equivalent HTTP/2 client (h2c, raw values) with the same closed-loop loads, alternating between
// the two systems, and prints one JSON line per measured phase on stdout (progress on stderr).
// bench/vs_etcd_native.ts builds it, starts both clusters, runs it and turns the lines into a table.
//
// Both systems get the same treatment: one HTTP/2 connection per endpoint shared by the simulated
// clients on that endpoint (gRPC multiplexes its calls over one connection the same way), the same
// keys and value bytes, the same warm-up and measurement window, and the same accounting of CPU.
package main

import (
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// target says which members a test's clients talk to.
type target int

const (
	toLeader target = iota
	toFollower
	toAll
)

// opKind is what every request of a test does.
type opKind int

const (
	opPut opKind = iota
	opGetLinearizable
	opGetStale
)

type test struct {
	name    string
	clients int
	target  target
	op      opKind
}

// tests are issue 10's nine loads, in its table's order.
var tests = []test{
	{"put, 1 client → leader", 1, toLeader, opPut},
	{"put, 1 client → follower", 1, toFollower, opPut},
	{"put, 16 clients, all nodes", 16, toAll, opPut},
	{"put, 64 clients, all nodes", 64, toAll, opPut},
	{"put, 64 clients → leader", 64, toLeader, opPut},
	{"linearizable get, 1 client → leader", 1, toLeader, opGetLinearizable},
	{"linearizable get, 64 clients, all nodes", 64, toAll, opGetLinearizable},
	{"linearizable get, 64 clients → leader", 64, toLeader, opGetLinearizable},
	{"stale get, 64 clients, all nodes", 64, toAll, opGetStale},
}

// system is one cluster under test as the load generator sees it.
type system interface {
	name() string
	endpoints() []string
	// findLeader returns the index of the member that is leader now.
	findLeader() (int, error)
	// do runs one request for key index k on connection conn of member ep.
	do(ep, conn int, op opKind, k int) error
	close()
}

type config struct {
	durationS   float64
	warmupS     float64
	warmRoundS  float64
	rounds      int
	keys        int
	valueBytes  int
	conns       int
	only        string
	timeout     time.Duration
	leaderWaitS float64
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func parsePids(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad pid %q", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var cfg config
	var etcdEps, etcdPids, phxEps, phxPids, phxToken string
	var timeoutMs int
	flag.StringVar(&etcdEps, "etcd", "", "etcd client endpoints host:port,host:port,...")
	flag.StringVar(&etcdPids, "etcd-pids", "", "pids of the etcd members, in --etcd order (for their CPU time)")
	flag.StringVar(&phxEps, "phalanx", "", "phalanx endpoints host:port,...")
	flag.StringVar(&phxPids, "phalanx-pids", "", "pids of the phalanx nodes, in --phalanx order (for their CPU time)")
	flag.StringVar(&phxToken, "phalanx-token", "", "client bearer token for phalanx (sent as Authorization: Bearer <token>)")
	flag.Float64Var(&cfg.durationS, "duration", 5, "measured seconds per phase")
	flag.Float64Var(&cfg.warmupS, "warmup", 1, "seconds of the same load before each measured phase")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; each runs every test once on each system")
	flag.Float64Var(&cfg.warmRoundS, "warm-round", 3, "seconds of each test on each system, unmeasured, before round 1 (0: none)")
	flag.IntVar(&cfg.keys, "keys", 10000, "distinct keys (all written before the first test)")
	flag.IntVar(&cfg.valueBytes, "value-bytes", 100, "bytes per value")
	flag.IntVar(&cfg.conns, "conns", 1, "HTTP/2 connections per endpoint, per system")
	flag.StringVar(&cfg.only, "only", "", "run only the tests whose name contains this text")
	flag.IntVar(&timeoutMs, "timeout-ms", 5000, "per-request timeout")
	flag.Float64Var(&cfg.leaderWaitS, "leader-wait", 30, "seconds to wait for a leader at start")
	flag.Parse()
	cfg.timeout = time.Duration(timeoutMs) * time.Millisecond

	if !(cfg.durationS > 0 && cfg.durationS <= 600) || !(cfg.warmupS >= 0 && cfg.warmupS <= 600) || !(cfg.warmRoundS >= 0 && cfg.warmRoundS <= 600) {
		fail("--duration must be in (0, 600], --warmup and --warm-round in [0, 600] seconds")
	}
	if cfg.rounds < 1 || cfg.rounds > 100 || cfg.keys < 1 || cfg.keys > 10_000_000 || cfg.valueBytes < 1 || cfg.valueBytes > 1<<20 || cfg.conns < 1 || cfg.conns > 64 {
		fail("--rounds in [1, 100], --keys in [1, 1e7], --value-bytes in [1, 1 MiB], --conns in [1, 64]")
	}
	selected := tests[:0:0]
	for _, t := range tests {
		if strings.Contains(t.name, cfg.only) {
			selected = append(selected, t)
		}
	}
	if len(selected) == 0 {
		fail("--only %q matches no test", cfg.only)
	}

	value := make([]byte, cfg.valueBytes)
	if _, err := rand.Read(value); err != nil {
		fail("random value: %v", err)
	}

	type sut struct {
		sys  system
		pids []int
	}
	var suts []sut
	if etcdEps != "" {
		pids, err := parsePids(etcdPids)
		if err != nil {
			fail("--etcd-pids: %v", err)
		}
		s, err := newEtcd(splitList(etcdEps), cfg, value)
		if err != nil {
			fail("etcd client: %v", err)
		}
		suts = append(suts, sut{s, pids})
	}
	if phxEps != "" {
		pids, err := parsePids(phxPids)
		if err != nil {
			fail("--phalanx-pids: %v", err)
		}
		suts = append(suts, sut{newPhalanx(splitList(phxEps), cfg, value, phxToken), pids})
	}
	if len(suts) == 0 {
		fail("give --etcd and/or --phalanx endpoints")
	}
	for _, s := range suts {
		if len(s.pids) != len(s.sys.endpoints()) {
			fail("%s: %d pids for %d endpoints (one pid per member, in the same order)", s.sys.name(), len(s.pids), len(s.sys.endpoints()))
		}
	}
	defer func() {
		for _, s := range suts {
			s.sys.close()
		}
	}()

	for _, s := range suts {
		if _, err := waitLeader(s.sys, s.pids, cfg.leaderWaitS); err != nil {
			fail("%v", err)
		}
		progress("%s: writing %d keys of %d bytes", s.sys.name(), cfg.keys, cfg.valueBytes)
		if err := prefill(s.sys, cfg); err != nil {
			fail("%s: prefill: %v", s.sys.name(), err)
		}
	}

	// A warm round first: every test once on each system, nothing recorded. Bun's JIT tiers a
	// server's hot code up over its first ~15,000 writes (a lone write to the leader costs it 250 µs
	// of compiler thread at first, about 0 once warm; BENCHMARKS.md), etcd is compiled ahead of
	// time: without it the first round measured phalanx's warm-up, not its steady state.
	if cfg.warmRoundS > 0 {
		warm := cfg
		warm.warmupS = 0
		warm.durationS = cfg.warmRoundS
		for _, t := range selected {
			for _, s := range suts {
				r, err := runPhase(s.sys, s.pids, t, warm)
				if err != nil {
					fail("%s: warm round: %s: %v", s.sys.name(), t.name, err)
				}
				progress("warm round %s: %s: %.0f ops/s (not recorded)", s.sys.name(), t.name, r.OpsPerSec)
			}
		}
	}

	out := json.NewEncoder(os.Stdout)
	for round := 1; round <= cfg.rounds; round++ {
		for _, t := range selected {
			// Alternate which system goes first, round by round, so neither always runs on a
			// machine warmed (or disturbed) by the other's phase.
			order := make([]sut, len(suts))
			copy(order, suts)
			if round%2 == 0 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			for _, s := range order {
				r, err := runPhase(s.sys, s.pids, t, cfg)
				if err != nil {
					fail("%s: %s: %v", s.sys.name(), t.name, err)
				}
				r.Round = round
				progress("round %d %s: %s: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, server %.0f µs/op (leader first: %s), generator %.0f µs/op, %d errors%s",
					round, s.sys.name(), t.name, r.OpsPerSec, r.P50Ms, r.P99Ms, r.ServerCPUUsPerOp, joinUs(r.MemberCPUUsPerOp), r.GenCPUUsPerOp, r.Errors, lastErr(r))
				if err := out.Encode(r); err != nil {
					fail("writing result: %v", err)
				}
			}
		}
	}
}

func joinUs(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " · ")
}

func lastErr(r result) string {
	if r.LastError == "" {
		return ""
	}
	return " (last: " + r.LastError + ")"
}

func progress(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
