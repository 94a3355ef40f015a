package ociwrap

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"runtime"
)

// On amd64 the wrapper is not a Go program but a 500-byte static ELF
// executable that Headway writes at start (ELF): four system calls and an
// exec. A Go program, even the 2 MB headway-init, costs a few milliseconds
// of CPU to start on this project's machines, and the shims run the OCI
// runtime four times per pod; this one costs what any exec costs. Other
// architectures use the Go wrapper (this package's init function).
//
// The machine code, position-independent (each string is reached
// RIP-relative), assembled from this source with GNU as; the strings follow
// it at the offsets the code expects (checked by ELF):
//
//	_start:	mov  $272, %eax               # unshare(CLONE_NEWNS)
//		mov  $0x20000, %edi
//		syscall
//		test %rax, %rax
//		jnz  failns
//		mov  $165, %eax               # mount(NULL, cg, NULL, MS_PRIVATE, NULL)
//		xor  %edi, %edi
//		lea  cg(%rip), %rsi
//		xor  %edx, %edx
//		mov  $0x40000, %r10d
//		xor  %r8d, %r8d
//		syscall
//		test %rax, %rax
//		jnz  failns
//		mov  $165, %eax               # mount(NULL, uni, NULL, MS_PRIVATE, NULL)
//		xor  %edi, %edi
//		lea  uni(%rip), %rsi
//		xor  %edx, %edx
//		mov  $0x40000, %r10d
//		xor  %r8d, %r8d
//		syscall
//		test %rax, %rax
//		jnz  failns
//		mov  $166, %eax               # umount2(uni, MNT_DETACH)
//		lea  uni(%rip), %rdi
//		mov  $2, %esi
//		syscall
//		test %rax, %rax
//		jnz  failns
//		lea  crun(%rip), %rax         # argv[0] = "crun"
//		mov  %rax, 8(%rsp)
//		mov  (%rsp), %rcx             # argc
//		lea  8(%rsp), %rsi            # argv
//		lea  16(%rsp,%rcx,8), %rdx    # envp, after argv's NULL
//		lea  target(%rip), %rdi
//		mov  $59, %eax                # execve(target, argv, envp)
//		syscall
//		lea  msgexec(%rip), %rsi
//		mov  $len(msgexec), %edx
//		jmp  fail
//	failns:	lea  msgns(%rip), %rsi
//		mov  $len(msgns), %edx
//	fail:	mov  $1, %eax                 # write(2, msg, len)
//		mov  $2, %edi
//		syscall
//		mov  $231, %eax               # exit_group(127)
//		mov  $127, %edi
//		syscall
//	cg:	.asciz "/sys/fs/cgroup"
//	uni:	.asciz "/sys/fs/cgroup/unified"
//	crun:	.asciz "crun"
//	msgns:	.ascii msgNS
//	msgexec: .ascii msgExec
//	target:	the crun to execute, NUL-terminated
var amd64Code = []byte{
	0xb8, 0x10, 0x01, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x02, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x0f,
	0x85, 0x8e, 0x00, 0x00, 0x00, 0xb8, 0xa5, 0x00, 0x00, 0x00, 0x31, 0xff, 0x48, 0x8d, 0x35, 0xa4,
	0x00, 0x00, 0x00, 0x31, 0xd2, 0x41, 0xba, 0x00, 0x00, 0x04, 0x00, 0x45, 0x31, 0xc0, 0x0f, 0x05,
	0x48, 0x85, 0xc0, 0x75, 0x6e, 0xb8, 0xa5, 0x00, 0x00, 0x00, 0x31, 0xff, 0x48, 0x8d, 0x35, 0x93,
	0x00, 0x00, 0x00, 0x31, 0xd2, 0x41, 0xba, 0x00, 0x00, 0x04, 0x00, 0x45, 0x31, 0xc0, 0x0f, 0x05,
	0x48, 0x85, 0xc0, 0x75, 0x4e, 0xb8, 0xa6, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0x75, 0x00, 0x00,
	0x00, 0xbe, 0x02, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x36, 0x48, 0x8d, 0x05,
	0x79, 0x00, 0x00, 0x00, 0x48, 0x89, 0x44, 0x24, 0x08, 0x48, 0x8b, 0x0c, 0x24, 0x48, 0x8d, 0x74,
	0x24, 0x08, 0x48, 0x8d, 0x54, 0xcc, 0x10, 0x48, 0x8d, 0x3d, 0x07, 0x01, 0x00, 0x00, 0xb8, 0x3b,
	0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x8d, 0x35, 0xa6, 0x00, 0x00, 0x00, 0xba, 0x53, 0x00, 0x00,
	0x00, 0xeb, 0x0c, 0x48, 0x8d, 0x35, 0x48, 0x00, 0x00, 0x00, 0xba, 0x50, 0x00, 0x00, 0x00, 0xb8,
	0x01, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0xe7, 0x00, 0x00, 0x00,
	0xbf, 0x7f, 0x00, 0x00, 0x00, 0x0f, 0x05,
}

// The messages the amd64 wrapper writes to stderr before exiting 127.
const (
	msgNS   = Name + ": cannot give crun a mount namespace without " + Unified + "\n"
	msgExec = Name + ": cannot execute crun (is the headway server that wrote this running?)\n"
)

// amd64Layout is where the code above reaches each string (the RIP-relative
// displacements assembled into it), as offsets from the code's start.
var amd64Layout = []struct {
	off int
	s   string
}{
	{0xc7, "/sys/fs/cgroup\x00"},
	{0xd6, Unified + "\x00"},
	{0xed, "crun\x00"},
	{0xf2, msgNS},
	{0x142, msgExec},
	{0x195, ""}, // the target
}

const elfBase = 0x400000 // where the one segment is loaded

// ELF returns the wrapper as a static executable that runs target (an
// absolute path: crun, or its sealed copy), or false on an architecture
// without one (use the Go wrapper there).
func ELF(target string) ([]byte, bool, error) {
	if runtime.GOARCH != "amd64" {
		return nil, false, nil
	}
	code := append([]byte(nil), amd64Code...)
	for _, l := range amd64Layout {
		if len(code) != l.off {
			return nil, false, fmt.Errorf("wrapper layout: %q at %#x, the code expects %#x", l.s, len(code), l.off)
		}
		code = append(code, l.s...)
	}
	code = append(code, target...)
	code = append(code, 0)

	const hdrs = 64 + 56 // ELF header, one program header
	size := uint64(hdrs + len(code))
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: elfBase + hdrs, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, &h)
	binary.Write(&b, binary.LittleEndian, &elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: elfBase, Paddr: elfBase, Filesz: size, Memsz: size, Align: 0x1000,
	})
	b.Write(code)
	return b.Bytes(), true, nil
}
