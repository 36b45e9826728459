package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuild(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev},
			debug.BuildSetting{Key: "vcs.modified", Value: modified})
		return bi
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name, ldflag string
		bi           *debug.BuildInfo
		want         Info
	}{
		{"ldflags win", "v1.2.3", vcs(rev, "true"),
			Info{Version: "v1.2.3", Revision: rev, Modified: true, Go: "go1.99.1"}},
		{"clean revision", "", vcs(rev, "false"),
			Info{Version: "0123456789ab", Revision: rev, Go: "go1.99.1"}},
		{"modified revision", "", vcs(rev, "true"),
			Info{Version: "0123456789ab-dirty", Revision: rev, Modified: true, Go: "go1.99.1"}},
		{"module version", "", &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.4.0"}},
			Info{Version: "v0.4.0", Go: "go1.99.1"}},
		{"nothing stamped", "", &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}},
			Info{Version: "devel", Go: "go1.99.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuild(tc.ldflag, tc.bi)
			got.Platform = ""
			if got != tc.want {
				t.Errorf("fromBuild(%q) = %+v, want %+v", tc.ldflag, got, tc.want)
			}
		})
	}
	if got := fromBuild("", nil); got.Version != "devel" || got.Go == "" {
		t.Errorf("fromBuild without build info = %+v, want version devel and the runtime's Go", got)
	}
}
