"""Synthetic bzImages: a valid boot header around a few bytes of 64-bit code.

They let the machine model (boot entry, ports, exits) be tested in seconds on
any KVM, including this project's PVM development host, without Linux.
The code runs either way minivmm boots a bzImage: 512 bytes into the
protected-mode part, where a real bzImage has its decompressor's 64-bit entry
(--boot=decompressor), and as the entry point of a small ELF kernel, the
gzip-compressed payload the header locates (--boot=direct).
"""
import gzip
import struct

SETUP_SECTS = 1
ELF_LOAD = 0x1000000  # where x86-64 kernels are linked to load


def make_elf(code, paddr=ELF_LOAD, machine=62, elf_class=2):
    """An x86-64 ELF executable, one PT_LOAD segment holding code at paddr, entered at its start."""
    ehdr_size, phdr_size = 64, 56
    offset = ehdr_size + phdr_size
    ident = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, paddr, ehdr_size, 0, 0, ehdr_size, phdr_size, 1,
                               64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, 0xFFFFFFFF80000000 + paddr, paddr, len(code), len(code), 0x200000)
    return ehdr + phdr + bytes(code)


def compress_payload(data):
    """As the kernel's build does: gzip -9 -n (the uncompressed size is gzip's own last 4 bytes)."""
    return gzip.compress(data, 9, mtime=0)


def make_bzimage(code, version=0x020F, xloadflags=1, loadflags=1, magic=b"HdrS", payload=None):
    """payload: the compressed kernel bytes (default: code as a gzip-compressed ELF kernel)."""
    setup = bytearray(512 * (SETUP_SECTS + 1))
    setup[0x1F1] = SETUP_SECTS
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200] = 0xEB  # jmp over the header; the offset byte says where it ends
    setup[0x201] = 0x66
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2048)  # cmdline_size
    struct.pack_into("<I", setup, 0x260, 0x100000)  # init_size
    protected = bytearray(0x200) + bytearray(code)  # 64-bit entry is 0x200 in
    if payload is None:
        payload = compress_payload(make_elf(code))
    struct.pack_into("<II", setup, 0x248, len(protected), len(payload))  # payload_offset, payload_length
    return bytes(setup) + bytes(protected) + bytes(payload)


# x86-64 machine code fragments.
def out_dx_ax(port, value):
    return b"\x66\xba" + struct.pack("<H", port) + b"\x66\xb8" + struct.pack("<H", value) + b"\x66\xef"


def out_dx_al(port, value):
    return b"\x66\xba" + struct.pack("<H", port) + bytes([0xB0, value, 0xEE])


HALT_FOREVER = b"\xfa\xf4\xeb\xfd"  # cli; 1: hlt; jmp 1b
POWEROFF = out_dx_ax(0x604, (5 << 10) | (1 << 13)) + HALT_FOREVER  # SLP_TYP=S5 | SLP_EN
ACPI_RESET = out_dx_al(0x608, 1) + HALT_FOREVER
I8042_RESET = b"\xb0\xfe\xe6\x64" + HALT_FOREVER  # mov al,0xfe; out 0x64,al
TRIPLE_FAULT = b"\x0f\x0b"  # ud2 with an empty IDT
JUMP_TO_MMIO_HOLE = b"\x48\xb8" + struct.pack("<Q", 0xD0000000) + b"\xff\xe0"  # mov rax,imm; jmp rax


def serial_print(text):
    return b"".join(out_dx_al(0x3F8, c) for c in text.encode())
