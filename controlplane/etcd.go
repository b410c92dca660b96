package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
)

// etcdServer is an in-process etcd bound to loopback on ports the kernel
// picks, so several control planes never race for a port.
type etcdServer struct {
	e         *embed.Etcd
	clientURL string
}

// checkEtcdData refuses a data dir whose bbolt database does not open, so a
// corrupt dir yields an error that names the file instead of a panic deep in
// etcd's startup.
func checkEtcdData(dir string) error {
	db := filepath.Join(dir, "member", "snap", "db")
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd database %s is corrupt or locked by another process: %w", db, err)
	}
	return b.Close()
}

func startEtcd(ctx context.Context, dir, logFile string, noFsync bool) (*etcdServer, error) {
	if err := checkEtcdData(dir); err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "skiff"
	cfg.Dir = dir
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{loop}
	cfg.AdvertiseClientUrls = []url.URL{loop}
	cfg.ListenPeerUrls = []url.URL{loop}
	cfg.AdvertisePeerUrls = []url.URL{loop}
	cfg.InitialCluster = "skiff=" + loop.String()
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = noFsync
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{logFile}
	cfg.QuotaBackendBytes = 8 << 30
	// Compaction is the operator's job here (the admin endpoint), so tests can
	// provoke 410 Gone exactly when they mean to.
	cfg.AutoCompactionRetention = "0"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd did not become ready within 60s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &etcdServer{e: e, clientURL: "http://" + e.Clients[0].Addr().String()}, nil
}

// compact compacts etcd's history up to the current revision and waits until
// the compaction is physically applied. Watches and lists from an older
// resourceVersion then fail (kube-apiserver reports 410 Gone once its watch
// cache no longer covers them).
func (s *etcdServer) compact(ctx context.Context) (int64, error) {
	rev := s.e.Server.KV().Rev()
	if _, err := s.e.Server.Compact(ctx, &pb.CompactionRequest{Revision: rev, Physical: true}); err != nil {
		return 0, fmt.Errorf("compact etcd at revision %d: %w", rev, err)
	}
	return rev, nil
}

func (s *etcdServer) close() { s.e.Close() }
