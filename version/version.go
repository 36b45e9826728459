// Package version says which build of weft is running: `weft version`, and
// each node's version in gossip metadata and `weft status`.
package version

import (
	"runtime"
	"runtime/debug"
)

// version is set by the Makefile's build:
// -ldflags "-X github.com/weftlb/weft/version.version=$(git describe ...)".
var version string

// Info describes the running binary.
type Info struct {
	// Version is the release (git describe) when the build set one, else
	// the VCS revision the Go toolchain stamped (12 digits, "-dirty" when
	// the tree was modified), else the module version, else "devel".
	Version string
	// Revision is the full VCS revision, when the toolchain stamped it.
	Revision string
	// Modified is set when the revision's tree had local changes.
	Modified bool
	// Go is the Go release the binary was built with.
	Go       string
	Platform string
}

// Get returns the running binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(version, bi)
}

// String is Get().Version, the one word a node publishes.
func String() string { return Get().Version }

// fromBuild works out Info from the -X value and the build info (nil when
// the binary has none).
func fromBuild(ldflag string, bi *debug.BuildInfo) Info {
	info := Info{Version: ldflag, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	if bi.GoVersion != "" {
		info.Go = bi.GoVersion
	}
	switch {
	case info.Version != "":
	case info.Revision != "":
		info.Version = info.Revision[:min(12, len(info.Revision))]
		if info.Modified {
			info.Version += "-dirty"
		}
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		info.Version = bi.Main.Version
	default:
		info.Version = "devel"
	}
	return info
}
