/*
 * vsock-echo: the guest side of keel's vsock tests (crates/keel/tests/vsock.rs).
 * Built at test time with riscv64-linux-gnu-gcc -static -O2 and put into the guest's
 * initramfs as /bin/vsock-echo.
 *
 *   vsock-echo cid               print this guest's CID ("cid N")
 *   vsock-echo listen PORT       print "listening PORT", accept one connection, echo what
 *                                it sends until end-of-file, print "echoed N bytes"
 *   vsock-echo sink PORT         like listen, but only read: print "received N fnv=HEX"
 *   vsock-echo connect CID PORT  connect, send stdin (then shut down writing), copy what
 *                                comes back to stdout until end-of-file
 *   vsock-echo pattern N         write N bytes of the test pattern to stdout
 *   vsock-echo sum               read stdin, print "bytes=N fnv=HEX" (FNV-1a, 64 bits)
 *
 * Errors go to stderr with exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define BUF (64 * 1024)

static void die(const char *what)
{
	fprintf(stderr, "vsock-echo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

static int accept_one(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY };
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	if (listen(s, 1) < 0)
		die("listen");
	printf("listening %u\n", port);
	fflush(stdout);
	int c = accept(s, NULL, NULL);
	if (c < 0)
		die("accept");
	close(s);
	return c;
}

/* Reads fd to its end, counting and hashing the bytes; with echo, writes each chunk back. */
static void drain(int fd, int echo, unsigned long long *total, uint64_t *h)
{
	static unsigned char buf[BUF];
	*total = 0;
	*h = FNV_INIT;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("read");
		}
		if (n == 0)
			break;
		*total += n;
		*h = fnv(*h, buf, n);
		if (echo && write_all(fd, buf, n) < 0)
			die("write");
	}
}

static int serve(unsigned port, int echo)
{
	int c = accept_one(port);
	unsigned long long total;
	uint64_t h;
	drain(c, echo, &total, &h);
	close(c);
	if (echo)
		printf("echoed %llu bytes\n", total);
	else
		printf("received %llu fnv=%016llx\n", total, (unsigned long long)h);
	return 0;
}

/* Sends stdin and copies the reply to stdout at the same time, so neither direction can
 * wait on the other. */
static int connect_to(unsigned cid, unsigned port)
{
	static unsigned char out[BUF], in[BUF];
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid };
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	size_t have = 0, off = 0;
	int stdin_open = 1, sock_open = 1, shut = 0;
	while (sock_open) {
		/* stdin is polled only when the buffer is empty (fd -1 is ignored: with events 0
		 * a hang-up would still be reported and the read would clobber unsent data). */
		struct pollfd p[2] = { { .fd = s, .events = POLLIN }, { .fd = -1, .events = POLLIN } };
		if (have > off)
			p[0].events |= POLLOUT;
		else if (stdin_open)
			p[1].fd = 0;
		if (!stdin_open && have == off && !shut) {
			shutdown(s, SHUT_WR);
			shut = 1;
		}
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[1].revents) {
			ssize_t n = read(0, out, sizeof out);
			if (n < 0 && errno != EINTR)
				die("read stdin");
			if (n == 0)
				stdin_open = 0;
			if (n > 0) {
				have = n;
				off = 0;
			}
		}
		if (p[0].revents & POLLOUT && have > off) {
			ssize_t n = write(s, out + off, have - off);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				die("send");
			if (n > 0)
				off += n;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(s, in, sizeof in);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				die("receive");
			if (n == 0)
				sock_open = 0;
			if (n > 0 && write_all(1, in, n) < 0)
				die("write stdout");
		}
	}
	close(s);
	return 0;
}

static int pattern(unsigned long long n)
{
	static unsigned char buf[BUF];
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	while (n) {
		size_t k = n < sizeof buf ? n : sizeof buf;
		for (size_t i = 0; i < k; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			for (int j = 0; j < 8 && i + j < k; j++)
				buf[i + j] = (unsigned char)(x >> (8 * j));
		}
		if (write_all(1, buf, k) < 0)
			die("write");
		n -= k;
	}
	return 0;
}

static int sum(void)
{
	unsigned long long total;
	uint64_t h;
	drain(0, 0, &total, &h);
	printf("bytes=%llu fnv=%016llx\n", total, (unsigned long long)h);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "cid")) {
		unsigned int cid;
		int fd = open("/dev/vsock", O_RDONLY);
		if (fd < 0)
			die("/dev/vsock");
		if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
			die("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
		printf("cid %u\n", cid);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "listen"))
		return serve(strtoul(argv[2], NULL, 10), 1);
	if (argc == 3 && !strcmp(argv[1], "sink"))
		return serve(strtoul(argv[2], NULL, 10), 0);
	if (argc == 4 && !strcmp(argv[1], "connect"))
		return connect_to(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "pattern"))
		return pattern(strtoull(argv[2], NULL, 10));
	if (argc == 2 && !strcmp(argv[1], "sum"))
		return sum();
	fprintf(stderr, "usage: vsock-echo cid | listen PORT | sink PORT | connect CID PORT | "
			"pattern N | sum\n");
	return 2;
}
