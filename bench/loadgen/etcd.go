package main

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

// etcdSystem drives etcd through clientv3, as an etcd user's Go program would: one client (one
// gRPC connection) per member and connection slot, each pinned to its member so that the test
// decides which member serves a request, not clientv3's balancer.
type etcdSystem struct {
	eps     []string
	clients [][]*clientv3.Client // [member][conn]
	keys    []string
	value   string
	timeout time.Duration
}

func newEtcd(eps []string, cfg config, value []byte) (*etcdSystem, error) {
	s := &etcdSystem{eps: eps, value: string(value), timeout: cfg.timeout}
	// Errors only: its retry warnings while the members start are noise; failed requests are
	// counted and reported by the generator itself.
	logs := logutil.DefaultZapLoggerConfig
	logs.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	for _, ep := range eps {
		var row []*clientv3.Client
		for c := 0; c < cfg.conns; c++ {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, LogConfig: &logs})
			if err != nil {
				s.close()
				return nil, fmt.Errorf("%s: %v", ep, err)
			}
			row = append(row, cli)
		}
		s.clients = append(s.clients, row)
	}
	s.keys = make([]string, cfg.keys)
	for k := range s.keys {
		s.keys[k] = keyName(k)
	}
	return s, nil
}

func (s *etcdSystem) name() string        { return "etcd" }
func (s *etcdSystem) endpoints() []string { return s.eps }

// findLeader asks each member for its status; the leader is the member that names itself.
func (s *etcdSystem) findLeader() (int, error) {
	var last error = fmt.Errorf("no member answered")
	for i, ep := range s.eps {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.clients[i][0].Status(ctx, ep)
		cancel()
		if err != nil {
			last = err
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return 0, last
}

func (s *etcdSystem) do(ep, conn int, op opKind, k int) error {
	cli := s.clients[ep][conn]
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	switch op {
	case opPut:
		_, err := cli.Put(ctx, s.keys[k], s.value)
		return err
	case opGetLinearizable, opGetStale:
		var opts []clientv3.OpOption
		if op == opGetStale {
			opts = append(opts, clientv3.WithSerializable())
		}
		resp, err := cli.Get(ctx, s.keys[k], opts...)
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != len(s.value) {
			return fmt.Errorf("get %s: %d values", s.keys[k], len(resp.Kvs))
		}
		return nil
	}
	panic("unknown op")
}

func (s *etcdSystem) close() {
	for _, row := range s.clients {
		for _, c := range row {
			c.Close()
		}
	}
}
