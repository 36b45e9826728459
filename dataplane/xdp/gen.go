package xdp

// The XDP program's C is in ../bpf. bpf2go compiles it for both byte orders
// and generates the Go types of its map keys and values. The include path
// gives clang the kernel UAPI's asm/types.h (Debian's linux-libc-dev keeps
// it under the multiarch directory).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel,bpfeb -type lb_addr -type svc_key -type svc_value -type svc_flags -type lb_mode -type lb_sched -type backend -type backend_flags -type flow_key -type ct_value -type ct_flags -type nat_value -type nat_flags -type neigh -type lb_config -type lb_stats -type peer -type peer_mac -type snat_value -type sync_reason -type flow_counters lb ../bpf/xdp_lb.bpf.c
