package main

import (
	"io"
	"slices"
	"testing"
)

func TestDemoCBORFlagTurnsOnTheGate(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--feature-gates=ShardedListAndWatch=true"}},
		{[]string{"--cbor"}, []string{"--feature-gates=ShardedListAndWatch=true,CBORServingAndStorage=true"}},
		{[]string{"--cbor=false"}, []string{"--feature-gates=ShardedListAndWatch=true"}},
	} {
		d, err := parseDemo(c.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := demoServerArgs(d.cbor); !slices.Equal(got, c.want) {
			t.Errorf("%q: server args %q, want %q", c.args, got, c.want)
		}
	}
}
