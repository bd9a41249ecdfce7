/*
 * execdriver's exec trampoline: the only program a container init (a copy of the engine)
 * ever execs. The native driver keeps it in a sealed, read-only memfd and enters it with
 * execveat(fd, "", AT_EMPTY_PATH), so that when container-controlled content is exec'd next,
 * /proc/self/exe of the process is this sealed file and never the engine's executable on the
 * host (the CVE-2019-5736 class: a `#!/proc/self/exe` entrypoint, an ld.so.preload library).
 *
 * argv[0]  the fd of the driver's socket to report an execve failure on, in decimal, or "-"
 * argv[1]  the program to exec (already looked up in the container's PATH)
 * argv[2…] the program's argv; the environment passes through as it is.
 *
 * On failure it sends one 16-byte record {kind, step, errno, arg} (the native driver's
 * `Msg` with kind ERROR and step Execve; a unit test keeps the numbers in step) and exits 127.
 * Built freestanding (no libc, static, no PIE): nothing runs before execve but this file.
 */

#define TRAMPOLINE_KIND_ERROR 3u
#define TRAMPOLINE_STEP_EXECVE 39u

#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_fcntl 72
#define NR_execve 59
#define NR_exit_group 231
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
#elif defined(__aarch64__)
#define NR_write 64
#define NR_close 57
#define NR_fcntl 25
#define NR_execve 221
#define NR_exit_group 94
static long sys3(long n, long a, long b, long c) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
#else
#error "the exec trampoline supports x86_64 and aarch64"
#endif

#define F_SETFD 2
#define FD_CLOEXEC 1

static void __attribute__((noreturn)) die(int code) {
    for (;;)
        sys3(NR_exit_group, code, 0, 0);
}

/* The decimal fd in s, or -1 ("-", empty, or anything else). */
static long parse_fd(const char *s) {
    long v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Called from _start with the initial stack pointer: argc, argv…, NULL, envp…, NULL. */
void __attribute__((noreturn, used)) trampoline_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 3)
        die(127);
    long fd = parse_fd(argv[0]);
    /* The program must not inherit the socket; where a seccomp profile refuses fcntl, close it
     * (the driver then learns of a failed exec from the exit status alone). */
    if (fd >= 0 && sys3(NR_fcntl, fd, F_SETFD, FD_CLOEXEC) < 0) {
        sys3(NR_close, fd, 0, 0);
        fd = -1;
    }
    long r = sys3(NR_execve, (long)argv[1], (long)(argv + 2), (long)envp);
    if (fd >= 0) {
        unsigned int rec[4] = {TRAMPOLINE_KIND_ERROR, TRAMPOLINE_STEP_EXECVE, (unsigned int)-r, 0};
        sys3(NR_write, fd, (long)rec, sizeof rec);
    }
    die(127);
}

#if defined(__x86_64__)
__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall trampoline_main\n");
#elif defined(__aarch64__)
__asm__(".globl _start\n_start:\n\tmov x0, sp\n\tbl trampoline_main\n");
#endif
