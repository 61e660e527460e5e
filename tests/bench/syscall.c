/*
 * syscall: the cost of entering and leaving the guest kernel, and of switching between
 * processes. Four loops: getppid() (the cheapest system call there is: trap in, trap out),
 * 64-byte read()s from /dev/zero and write()s to /dev/null (a copy to and from user memory on
 * each), and a ping-pong of an 8-byte counter between two processes over a pair of pipes
 * (each round trip: two writes, two reads, two blocking waits and two context switches on the
 * one vCPU).
 *
 * For a CPU model this is the trap and privilege-switch path, the guest's page-table and
 * address-space switches and the flushes they cause: costs that pure user-mode loops never see.
 *
 * Prints `checksum <hex> ...` (counts and the final counter: the same on every correct
 * machine) and `elapsed <seconds>` (CLOCK_MONOTONIC around the four loops).
 * Optional argument: a scale factor (default 2).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

int main(int argc, char **argv) {
	long scale = argc > 1 ? atol(argv[1]) : 2;
	long calls = scale * 20000, chunks = scale * 8000, trips = scale * 2000;
	int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
	if (zero < 0 || null < 0)
		die("open /dev/zero, /dev/null");
	int ping[2], pong[2];
	if (pipe(ping) || pipe(pong))
		die("pipe");

	double t0 = now();
	/* The raw system call: no libc wrapper may answer from a cache. */
	uint64_t ppid_sum = 0;
	for (long i = 0; i < calls; i++)
		ppid_sum += syscall(SYS_getppid);

	char buf[64];
	uint64_t bytes_in = 0, bytes_out = 0, byte_sum = 0;
	for (long i = 0; i < chunks; i++) {
		ssize_t r = read(zero, buf, sizeof buf);
		if (r != sizeof buf)
			die("read /dev/zero");
		bytes_in += r;
		byte_sum += buf[i % sizeof buf];
	}
	for (long i = 0; i < chunks; i++) {
		buf[i % sizeof buf] = i;
		ssize_t w = write(null, buf, sizeof buf);
		if (w != sizeof buf)
			die("write /dev/null");
		bytes_out += w;
	}

	/* The child adds 1 to each counter it gets and sends it back; the parent adds 2. */
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		/* Only the parent may hold the write end of ping, or the child never sees its end. */
		close(ping[1]);
		close(pong[0]);
		uint64_t v;
		while (read(ping[0], &v, sizeof v) == sizeof v) {
			v += 1;
			if (write(pong[1], &v, sizeof v) != sizeof v)
				_exit(1);
		}
		_exit(0);
	}
	close(ping[0]);
	close(pong[1]);
	uint64_t counter = 0;
	for (long i = 0; i < trips; i++) {
		if (write(ping[1], &counter, sizeof counter) != sizeof counter)
			die("write ping");
		if (read(pong[0], &counter, sizeof counter) != sizeof counter)
			die("read pong");
		counter += 2;
	}
	close(ping[1]); /* the child sees end of file and exits */
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		die("child");
	double t1 = now();

	printf("checksum %llu %llu %llu %llu %llu\n", (unsigned long long)ppid_sum,
	       (unsigned long long)bytes_in, (unsigned long long)byte_sum,
	       (unsigned long long)bytes_out, (unsigned long long)counter);
	printf("elapsed %.6f\n", t1 - t0);
	return 0;
}
