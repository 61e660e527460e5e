/*
 * fp: double-precision floating point. Two kernels: an n-body simulation (the five Jovian
 * planets of the Computer Language Benchmarks Game: multiply-adds, a sqrt and a divide per
 * pair and step) and a dense 160x160 matrix multiply repeated with a normalisation (loads,
 * multiply-adds, divides), so both FP latency chains and FP throughput count.
 *
 * Every operation is IEEE 754 with round-to-nearest and no library calls beyond sqrt, so a
 * correct RISC-V CPU model gives bit-identical results: the checksum is the raw bits of the
 * results, and any difference between two CPU models is a bug in one of them.
 *
 * Prints `checksum <hex> <hex> <energy>` and `elapsed <seconds>` (CLOCK_MONOTONIC around both
 * kernels). Optional argument: a scale factor (default 2).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t bits(double d) {
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	return u;
}

#define PI 3.141592653589793
#define SOLAR_MASS (4 * PI * PI)
#define DAYS_PER_YEAR 365.24
#define NBODIES 5

struct body {
	double x, y, z, vx, vy, vz, mass;
};

static struct body bodies[NBODIES] = {
	{0, 0, 0, 0, 0, 0, SOLAR_MASS},
	{4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
	 1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
	 -6.90460016972063023e-05 * DAYS_PER_YEAR, 9.54791938424326609e-04 * SOLAR_MASS},
	{8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
	 -2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
	 2.30417297573763929e-05 * DAYS_PER_YEAR, 2.85885980666130812e-04 * SOLAR_MASS},
	{1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
	 2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
	 -2.96589568540237556e-05 * DAYS_PER_YEAR, 4.36624404335156298e-05 * SOLAR_MASS},
	{1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
	 2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
	 -9.51592254519715870e-05 * DAYS_PER_YEAR, 5.15138902046611451e-05 * SOLAR_MASS},
};

static void advance(double dt) {
	for (int i = 0; i < NBODIES; i++) {
		struct body *a = &bodies[i];
		for (int j = i + 1; j < NBODIES; j++) {
			struct body *b = &bodies[j];
			double dx = a->x - b->x, dy = a->y - b->y, dz = a->z - b->z;
			double d2 = dx * dx + dy * dy + dz * dz;
			double mag = dt / (d2 * sqrt(d2));
			a->vx -= dx * b->mass * mag;
			a->vy -= dy * b->mass * mag;
			a->vz -= dz * b->mass * mag;
			b->vx += dx * a->mass * mag;
			b->vy += dy * a->mass * mag;
			b->vz += dz * a->mass * mag;
		}
	}
	for (int i = 0; i < NBODIES; i++) {
		bodies[i].x += dt * bodies[i].vx;
		bodies[i].y += dt * bodies[i].vy;
		bodies[i].z += dt * bodies[i].vz;
	}
}

static double energy(void) {
	double e = 0;
	for (int i = 0; i < NBODIES; i++) {
		struct body *a = &bodies[i];
		e += 0.5 * a->mass * (a->vx * a->vx + a->vy * a->vy + a->vz * a->vz);
		for (int j = i + 1; j < NBODIES; j++) {
			struct body *b = &bodies[j];
			double dx = a->x - b->x, dy = a->y - b->y, dz = a->z - b->z;
			e -= a->mass * b->mass / sqrt(dx * dx + dy * dy + dz * dz);
		}
	}
	return e;
}

static void offset_momentum(void) {
	double px = 0, py = 0, pz = 0;
	for (int i = 0; i < NBODIES; i++) {
		px += bodies[i].vx * bodies[i].mass;
		py += bodies[i].vy * bodies[i].mass;
		pz += bodies[i].vz * bodies[i].mass;
	}
	bodies[0].vx = -px / SOLAR_MASS;
	bodies[0].vy = -py / SOLAR_MASS;
	bodies[0].vz = -pz / SOLAR_MASS;
}

#define N 160
static double A[N][N], B[N][N], C[N][N];

/* C = A * B, then A = C scaled so its largest row sum is 1 (keeps the values bounded). */
static double matmul_step(void) {
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < N; j++)
			C[i][j] = 0;
		for (int k = 0; k < N; k++) {
			double a = A[i][k];
			for (int j = 0; j < N; j++)
				C[i][j] += a * B[k][j];
		}
	}
	double norm = 0;
	for (int i = 0; i < N; i++) {
		double s = 0;
		for (int j = 0; j < N; j++)
			s += fabs(C[i][j]);
		if (s > norm)
			norm = s;
	}
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++)
			A[i][j] = C[i][j] / norm;
	return norm;
}

int main(int argc, char **argv) {
	int scale = argc > 1 ? atoi(argv[1]) : 2;
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++) {
			A[i][j] = 1.0 / (1 + i + j);
			B[i][j] = ((i * 7 + j * 13) % 17 - 8) / 8.0 + (i == j);
		}
	offset_momentum();

	double t0 = now();
	for (int s = 0; s < scale * 100000; s++)
		advance(0.01);
	double e = energy();
	double trace = 0;
	for (int r = 0; r < scale * 4; r++)
		trace += matmul_step();
	for (int i = 0; i < N; i++)
		trace += A[i][i];
	double t1 = now();

	printf("checksum %016llx %016llx %.9f\n", (unsigned long long)bits(e),
	       (unsigned long long)bits(trace), e);
	printf("elapsed %.6f\n", t1 - t0);
	return 0;
}
