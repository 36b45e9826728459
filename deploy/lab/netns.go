package lab

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Do runs fn with the calling goroutine's thread in a host's network
// namespace: sockets it creates and links it attaches live there. Nothing
// fn starts in other goroutines is affected.
func (l *Lab) Do(h Host, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", h.NS))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", h.NS, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", h.NS, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: never let it run anything else.
		panic(fmt.Sprintf("return from netns %s: %v", h.NS, err))
	}
	return fnErr
}

// MAC returns the hardware address of a host's interface.
func (l *Lab) MAC(h Host, iface string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := l.Do(h, func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		mac = ifc.HardwareAddr
		return nil
	})
	return mac, err
}

// SwitchPort is the switch-side interface of a fabric host's veth.
func (l *Lab) SwitchPort(h Host) string {
	for i, f := range append([]Host{l.Router}, append(l.Nodes, l.Servers...)...) {
		if f.NS == h.NS {
			return fmt.Sprintf("p%d", i)
		}
	}
	return ""
}

// AttachPass attaches an XDP program that passes every frame to the
// switch side of a host's veth. A frame sent with XDP_TX on a veth is only
// delivered when the peer has an XDP program (DESIGN.md, lab facts).
func (l *Lab) AttachPass(h Host) (io.Closer, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "weft_lab_pass",
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("load xdp pass: %w", err)
	}
	defer prog.Close() // the link holds its own reference
	var lk link.Link
	err = l.Do(l.Switch, func() error {
		ifc, err := net.InterfaceByName(l.SwitchPort(h))
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach xdp pass to the switch port of %s: %w", h.Name, err)
	}
	return lk, nil
}
