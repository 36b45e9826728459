package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestLogFileReopen: after the file is renamed (as logrotate does),
// Reopen sends the next lines to a new file at the path.
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	io.WriteString(f, "one\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "two\n") // still the renamed file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "three\n")
	for name, want := range map[string]string{path + ".1": "one\ntwo\n", path: "three\n"} {
		if b, err := os.ReadFile(name); err != nil || string(b) != want {
			t.Errorf("%s holds %q (%v), want %q", name, b, err, want)
		}
	}
	if _, err := openLogFile(filepath.Join(dir, "missing", "access.log")); err == nil {
		t.Error("a log file in a missing directory opened")
	}
}
