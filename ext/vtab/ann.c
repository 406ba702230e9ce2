/*
** ann.c — the registry of approximate index kinds, and the helpers every
** kind uses to read its index=KIND(key=value, ...) parameters.
**
** To add a kind: implement annex_ann_ops (ann.h) in its own file and list
** it in g_aKind below.
*/
#include "ann.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const annex_ann_ops *const g_aKind[] = {
    &annex_hnsw_ops,
    &annex_ivf_ops,
    &annex_diskann_ops,
};
#define ANN_NKIND ((int)(sizeof(g_aKind) / sizeof(g_aKind[0])))

const annex_ann_ops *annex_ann_find(const char *zKind) {
  for (int i = 0; i < ANN_NKIND; i++) {
    if (sqlite3_stricmp(zKind, g_aKind[i]->zKind) == 0) return g_aKind[i];
  }
  return NULL;
}

const char *annex_ann_kinds(void) {
  static char zList[128];
  if (zList[0] == 0) {
    size_t n = 0;
    n += (size_t)snprintf(zList, sizeof(zList), "flat");
    for (int i = 0; i < ANN_NKIND && n < sizeof(zList); i++) {
      n += (size_t)snprintf(zList + n, sizeof(zList) - n, ", %s",
                            g_aKind[i]->zKind);
    }
  }
  return zList;
}

const char *annex_config_param(const annex_config *c, const char *zKey) {
  for (int i = 0; i < c->nParam; i++) {
    if (strcmp(c->aParam[i].zKey, zKey) == 0) return c->aParam[i].zVal;
  }
  return NULL;
}

int annex_param_int(const annex_config *c, const char *zKey, int iMin,
                    int iMax, int *pv, char **pzErr) {
  const char *z = annex_config_param(c, zKey);
  char *zEnd;
  long v;
  if (z == NULL) return SQLITE_OK;
  errno = 0;
  v = strtol(z, &zEnd, 10);
  if (zEnd == z || *zEnd != 0 || errno != 0 || v < iMin || v > iMax) {
    *pzErr = sqlite3_mprintf("index parameter %s=%s: expected an integer "
                             "from %d to %d", zKey, z, iMin, iMax);
    return SQLITE_ERROR;
  }
  *pv = (int)v;
  return SQLITE_OK;
}

int annex_param_double(const annex_config *c, const char *zKey, double rMin,
                       double rMax, double *pv, char **pzErr) {
  const char *z = annex_config_param(c, zKey);
  char *zEnd;
  double v;
  if (z == NULL) return SQLITE_OK;
  v = strtod(z, &zEnd);
  if (zEnd == z || *zEnd != 0 || !(v >= rMin && v <= rMax)) {
    *pzErr = sqlite3_mprintf("index parameter %s=%s: expected a number from "
                             "%g to %g", zKey, z, rMin, rMax);
    return SQLITE_ERROR;
  }
  *pv = v;
  return SQLITE_OK;
}

int annex_ann_shadow_name(const char *zSuffix) {
  for (int i = 0; i < ANN_NKIND; i++) {
    for (const char *const *az = g_aKind[i]->azShadow; az && *az; az++) {
      if (sqlite3_stricmp(zSuffix, *az) == 0) return 1;
    }
  }
  return 0;
}
