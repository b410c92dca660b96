package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Pid is the process id of the skiff-controlplane process, which testenv
// starts directly (no wrapper). etcd and kube-apiserver run inside that
// process; kube-controller-manager, unless Options.Controllers is "none",
// runs in a child process of its own. After Stop the id may belong to
// another process.
func (e *Env) Pid() int { return e.cmd.Process.Pid }

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which
// the Linux ABI fixes at 100 on every architecture.
const userHZ = 100

// CPUTime is the user plus system CPU time the control plane process —
// etcd and kube-apiserver, all their threads — has used since it started,
// read from /proc/<pid>/stat (Linux only). It does not include the
// controller manager's child process. The kernel counts in ticks of 10 ms,
// so compare differences over spans that use much more than that. Call it
// only before Stop (the process id may be reused afterwards).
func (e *Env) CPUTime() (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", e.Pid())
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read the control plane's CPU time: %w", err)
	}
	d, err := parseProcStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("read the control plane's CPU time from %s: %w", path, err)
	}
	return d, nil
}

// parseProcStatCPU returns utime+stime of a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no ')' ending the command name in %q", stat)
	}
	// After ") " come field 3 (state) onwards; utime and stime are fields
	// 14 and 15, that is the 12th and 13th after the name.
	f := bytes.Fields(stat[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13, in %q", len(f), stat)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time field %q is not a tick count: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}
