package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	tail := " S 1 2 3 0 -1 4194560 100 0 0 0 %s 0 0 20 0 12 0 1847393 3133440 394"
	tests := []struct {
		name string
		stat string
		want time.Duration
	}{
		{"plain name", "4242 (skiff-controlp)" + strings.Replace(tail, "%s", "250 37", 1), 2870 * time.Millisecond},
		{"name with spaces and parens", "7 (a) b (c)" + strings.Replace(tail, "%s", "1 2", 1), 30 * time.Millisecond},
		{"zero", "7 (x)" + strings.Replace(tail, "%s", "0 0", 1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStatCPU([]byte(tt.stat + "\n"))
			if err != nil {
				t.Fatalf("parse %q: %v", tt.stat, err)
			}
			if got != tt.want {
				t.Fatalf("parse %q = %v, want %v", tt.stat, got, tt.want)
			}
		})
	}
}

func TestParseProcStatCPURejectsBadLines(t *testing.T) {
	for _, stat := range []string{
		"",
		"4242 skiff S 1 2 3 0 -1 4194560 100 0 0 0 250 37 0 0",
		"4242 (skiff) S 1 2 3",
		"4242 (skiff) S 1 2 3 0 -1 4194560 100 0 0 0 x 37 0 0",
		"4242 (skiff) S 1 2 3 0 -1 4194560 100 0 0 0 250 -1 0 0",
	} {
		if d, err := parseProcStatCPU([]byte(stat)); err == nil {
			t.Errorf("parse %q = %v, want an error", stat, d)
		}
	}
}
