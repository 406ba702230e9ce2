/*
** ivf_kmeans.c — times annex's k-means (ext/index/kmeans.c) on an .fvecs
** file, for bench/ivf_peers.py to set against FAISS k-means with the same
** k, iterations and sample. Not built by CMake: ivf_peers.py compiles it.
**
** Usage: ivf_kmeans BASE.fvecs K ITERS MAX_PER_CENTROID THREADS [REPEAT]
** Prints one line per run: "kmeans_seconds S objective O".
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "index/kmeans.h"

static float *read_fvecs(const char *zPath, int *pn, int *pd) {
  FILE *f = fopen(zPath, "rb");
  int32_t d;
  long sz;
  float *a;
  if (f == NULL || fread(&d, 4, 1, f) != 1 || d <= 0) return NULL;
  fseek(f, 0, SEEK_END);
  sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  *pd = d;
  *pn = (int)(sz / (4 * (d + 1)));
  a = malloc((size_t)*pn * (size_t)d * 4);
  for (int i = 0; i < *pn; i++) {
    if (fread(&d, 4, 1, f) != 1 ||
        fread(a + (size_t)i * d, 4, (size_t)d, f) != (size_t)d) {
      return NULL;
    }
  }
  fclose(f);
  return a;
}

int main(int argc, char **argv) {
  int n, d, nRep = argc > 6 ? atoi(argv[6]) : 1;
  float *aX, *aC;
  annex_kmeans_params p = {0};
  if (argc < 6) {
    fprintf(stderr, "usage: %s BASE K ITERS MAXPER THREADS [REPEAT]\n",
            argv[0]);
    return 2;
  }
  aX = read_fvecs(argv[1], &n, &d);
  if (aX == NULL) return 1;
  p.k = atoi(argv[2]);
  p.nIter = atoi(argv[3]);
  p.nMaxPerCentroid = (size_t)atoi(argv[4]);
  p.nThread = atoi(argv[5]);
  p.seed = 1234;
  aC = malloc(sizeof(float) * (size_t)p.k * (size_t)d);
  for (int r = 0; r < nRep; r++) {
    struct timespec t0, t1;
    double obj;
    int rc;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = annex_kmeans_train(aX, (size_t)n, (size_t)d, &p, aC, &obj);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc) return 1;
    printf("kmeans_seconds %.4f objective %.6g\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec),
           obj);
  }
  return 0;
}
