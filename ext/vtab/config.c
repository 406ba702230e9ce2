/*
** config.c — parsing the arguments of CREATE VIRTUAL TABLE ... USING annex.
**
** Grammar (one argument per comma-separated item; SQLite keeps parentheses
** balanced, so "index=flat()" arrives as one argument):
**
**   vector column    NAME TYPE[N] [distance=l2|cosine|ip|hamming]
**                    TYPE is float (alias float32), int8 or bit
**   metadata column  NAME text|integer|real        (filterable)
**   auxiliary column +NAME [any declared type]     (stored, not filterable)
**   option           index=KIND | index=KIND(key=value, ...) | chunk_size=N
**                    | device=auto|cpu|gpu (where k-NN runs; gpu.c)
**                    KIND is flat or an ANN kind of ann.c (hnsw, ivf, ...);
**                    the kind's xParams checks its parameters
**
** Exactly one vector column. Names are case-insensitive and may be quoted
** with "", `` or []. Every error names the offending argument.
*/
#include "annex_int.h"
#include "ann.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *annex_elem_name(annex_elem e) {
  switch (e) {
    case ANNEX_ELEM_FLOAT32: return "float";
    case ANNEX_ELEM_INT8: return "int8";
    case ANNEX_ELEM_BIT: return "bit";
  }
  return "?";
}

const char *annex_metric_name(annex_metric m) {
  switch (m) {
    case ANNEX_METRIC_L2: return "l2";
    case ANNEX_METRIC_COSINE: return "cosine";
    case ANNEX_METRIC_IP: return "ip";
    case ANNEX_METRIC_HAMMING: return "hamming";
  }
  return "?";
}

const char *annex_index_name(const annex_config *c) {
  return c->pAnnOps ? c->pAnnOps->zKind : "flat";
}

/* A cursor over one argument string. */
typedef struct arg_scan {
  const char *z; /* the argument */
  int i;         /* current offset */
} arg_scan;

static void skip_space(arg_scan *s) {
  while (s->z[s->i] && isspace((unsigned char)s->z[s->i])) s->i++;
}

/* Read an identifier (bare or quoted) into a new string; NULL if none or
** on OOM (*pbOom set). */
static char *read_ident(arg_scan *s, int *pbOom) {
  const char *z = s->z + s->i;
  char q = 0;
  int n = 0;
  char *zOut;
  if (*z == '"' || *z == '`' || *z == '[') {
    q = (*z == '[') ? ']' : *z;
    z++;
    while (z[n] && z[n] != q) n++;
    if (z[n] != q || n == 0) return NULL;
    s->i += n + 2;
  } else {
    while (z[n] && (isalnum((unsigned char)z[n]) || z[n] == '_')) n++;
    if (n == 0) return NULL;
    s->i += n;
  }
  zOut = sqlite3_mprintf("%.*s", n, z);
  if (zOut == NULL) *pbOom = 1;
  return zOut;
}

/* Read a bare word (letters, digits, '_') and compare case-insensitively. */
static int read_word(arg_scan *s, char *zBuf, int nBuf) {
  int n = 0;
  while (s->z[s->i] &&
         (isalnum((unsigned char)s->z[s->i]) || s->z[s->i] == '_')) {
    if (n < nBuf - 1) zBuf[n] = (char)tolower((unsigned char)s->z[s->i]);
    n++;
    s->i++;
  }
  zBuf[n < nBuf ? n : nBuf - 1] = 0;
  return n;
}

static int parse_metric(const char *z, annex_metric *pm) {
  static const struct { const char *z; annex_metric m; } aMap[] = {
      {"l2", ANNEX_METRIC_L2},
      {"cosine", ANNEX_METRIC_COSINE},
      {"ip", ANNEX_METRIC_IP},
      {"hamming", ANNEX_METRIC_HAMMING},
  };
  for (size_t i = 0; i < sizeof(aMap) / sizeof(aMap[0]); i++) {
    if (sqlite3_stricmp(z, aMap[i].z) == 0) {
      *pm = aMap[i].m;
      return 0;
    }
  }
  return -1;
}

/* Parse "TYPE[N] [distance=M]" after a column name. Returns 1 if the
** text is a vector type, 0 if it is not (then s is unchanged), -1 on error. */
static int parse_vector_type(arg_scan *s, annex_config *p, char **pzErr) {
  static const struct { const char *z; annex_elem e; } aType[] = {
      {"float", ANNEX_ELEM_FLOAT32}, {"float32", ANNEX_ELEM_FLOAT32},
      {"int8", ANNEX_ELEM_INT8},     {"bit", ANNEX_ELEM_BIT},
  };
  arg_scan save = *s;
  char zType[32], zKey[32], zVal[32];
  long nDim;
  char *zEnd;
  int found = -1;
  read_word(s, zType, sizeof(zType));
  skip_space(s);
  if (s->z[s->i] != '[') {
    *s = save;
    return 0;
  }
  for (size_t i = 0; i < sizeof(aType) / sizeof(aType[0]); i++) {
    if (strcmp(zType, aType[i].z) == 0) found = (int)i;
  }
  if (found < 0) {
    *pzErr = sqlite3_mprintf(
        "unknown vector element type '%s' in \"%s\" (expected float, int8 or "
        "bit)", zType, s->z);
    return -1;
  }
  p->eElem = aType[found].e;
  nDim = strtol(s->z + s->i + 1, &zEnd, 10);
  if (zEnd == s->z + s->i + 1 || *zEnd != ']' || nDim < 1 ||
      nDim > ANNEX_MAX_DIMS) {
    *pzErr = sqlite3_mprintf(
        "bad dimension count in \"%s\" (expected an integer from 1 to %d)",
        s->z, ANNEX_MAX_DIMS);
    return -1;
  }
  if (p->eElem == ANNEX_ELEM_BIT && nDim % 8 != 0) {
    *pzErr = sqlite3_mprintf("bit[%ld] in \"%s\": bit vectors need a "
                             "dimension count that is a multiple of 8",
                             nDim, s->z);
    return -1;
  }
  p->nDim = (int)nDim;
  s->i = (int)(zEnd - s->z) + 1;
  p->eMetric = p->eElem == ANNEX_ELEM_BIT ? ANNEX_METRIC_HAMMING
                                          : ANNEX_METRIC_L2;
  skip_space(s);
  if (s->z[s->i] == 0) return 1;
  read_word(s, zKey, sizeof(zKey));
  skip_space(s);
  if (strcmp(zKey, "distance") != 0 || s->z[s->i] != '=') {
    *pzErr = sqlite3_mprintf("unexpected text in vector column \"%s\" "
                             "(only distance=... may follow the type)", s->z);
    return -1;
  }
  s->i++;
  skip_space(s);
  read_word(s, zVal, sizeof(zVal));
  skip_space(s);
  if (parse_metric(zVal, &p->eMetric) != 0 || s->z[s->i] != 0) {
    *pzErr = sqlite3_mprintf("unknown distance '%s' in \"%s\" (expected l2, "
                             "cosine, ip or hamming)", zVal, s->z);
    return -1;
  }
  if ((p->eElem == ANNEX_ELEM_BIT) != (p->eMetric == ANNEX_METRIC_HAMMING)) {
    *pzErr = sqlite3_mprintf(
        "distance=%s does not apply to %s vectors in \"%s\" (bit vectors use "
        "hamming; float and int8 use l2, cosine or ip)",
        zVal, annex_elem_name(p->eElem), s->z);
    return -1;
  }
  return 1;
}

/* Parse "key = value" items of index=KIND(...) up to the closing ')'. */
static int parse_params(const char *zArg, arg_scan *s, annex_config *p,
                        char **pzErr) {
  s->i++; /* '(' */
  skip_space(s);
  while (s->z[s->i] && s->z[s->i] != ')') {
    annex_param *a;
    int n = 0;
    if (p->nParam == ANNEX_MAX_PARAMS) {
      *pzErr = sqlite3_mprintf("too many index parameters in \"%s\"", zArg);
      return SQLITE_ERROR;
    }
    a = &p->aParam[p->nParam];
    read_word(s, a->zKey, sizeof(a->zKey));
    skip_space(s);
    if (a->zKey[0] == 0 || s->z[s->i] != '=') {
      *pzErr = sqlite3_mprintf("expected key=value in index parameters of "
                               "\"%s\"", zArg);
      return SQLITE_ERROR;
    }
    s->i++;
    skip_space(s);
    while (s->z[s->i] && s->z[s->i] != ',' && s->z[s->i] != ')' &&
           !isspace((unsigned char)s->z[s->i])) {
      if (n + 1 < (int)sizeof(a->zVal)) a->zVal[n++] = s->z[s->i];
      s->i++;
    }
    a->zVal[n] = 0;
    skip_space(s);
    for (int j = 0; j < p->nParam; j++) {
      if (strcmp(p->aParam[j].zKey, a->zKey) == 0) {
        *pzErr = sqlite3_mprintf("index parameter %s given twice in \"%s\"",
                                 a->zKey, zArg);
        return SQLITE_ERROR;
      }
    }
    p->nParam++;
    if (s->z[s->i] == ',') {
      s->i++;
      skip_space(s);
    }
  }
  if (s->z[s->i] != ')') {
    *pzErr = sqlite3_mprintf("missing ')' in \"%s\"", zArg);
    return SQLITE_ERROR;
  }
  s->i++;
  skip_space(s);
  return SQLITE_OK;
}

/* Parse the value of index=KIND or index=KIND(...). The kind's parameters
** are checked once the vector column is known (annex_config_parse). */
static int parse_index(const char *zArg, const char *zVal, annex_config *p,
                       char **pzErr) {
  arg_scan s = {zVal, 0};
  char zKind[32];
  int rc = SQLITE_OK;
  read_word(&s, zKind, sizeof(zKind));
  skip_space(&s);
  if (strcmp(zKind, "flat") == 0) {
    p->eIndex = ANNEX_INDEX_FLAT;
  } else if ((p->pAnnOps = annex_ann_find(zKind)) != NULL) {
    p->eIndex = ANNEX_INDEX_ANN;
  } else {
    *pzErr = sqlite3_mprintf("unknown index kind '%s' in \"%s\" (this build "
                             "supports: %s)", zKind, zArg, annex_ann_kinds());
    return SQLITE_ERROR;
  }
  if (s.z[s.i] == '(') rc = parse_params(zArg, &s, p, pzErr);
  if (rc == SQLITE_OK && p->eIndex == ANNEX_INDEX_FLAT && p->nParam > 0) {
    *pzErr = sqlite3_mprintf("index=flat takes no parameters: \"%s\"", zArg);
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK && s.z[s.i] != 0) {
    *pzErr = sqlite3_mprintf("unexpected text after index kind in \"%s\"",
                             zArg);
    rc = SQLITE_ERROR;
  }
  return rc;
}

/* Vectors per chunk. The default is the largest power of two up to
** ANNEX_CHUNK_DEFAULT whose chunk stays within ANNEX_CHUNK_TARGET_BYTES:
** big enough that a scan reads long contiguous runs, small enough that an
** insert, which walks the chunk's overflow-page chain to its slot, stays
** cheap and the chain stays in SQLite's page cache. */
static int settle_chunk_size(annex_config *p, int bExplicit, char **pzErr) {
  p->szVec = annex_vector_bytes(p->eElem, (size_t)p->nDim);
  if (!bExplicit) {
    while (p->nChunk > ANNEX_CHUNK_MIN &&
           (p->szVec + 9 * (size_t)p->nMeta) * (size_t)p->nChunk >
               ANNEX_CHUNK_TARGET_BYTES) {
      p->nChunk /= 2;
    }
  }
  if ((p->szVec + 9 * (size_t)p->nMeta) * (size_t)p->nChunk >
      ANNEX_CHUNK_MAX_BYTES) {
    *pzErr = sqlite3_mprintf("chunk_size=%d is too large for %s[%d] vectors "
                             "(a chunk may hold at most %d MiB)", p->nChunk,
                             annex_elem_name(p->eElem), p->nDim,
                             ANNEX_CHUNK_MAX_BYTES >> 20);
    return SQLITE_ERROR;
  }
  return SQLITE_OK;
}

static int parse_chunk_size(const char *zArg, const char *zVal,
                            annex_config *p, char **pzErr) {
  char *zEnd;
  long n = strtol(zVal, &zEnd, 10);
  while (*zEnd && isspace((unsigned char)*zEnd)) zEnd++;
  if (zEnd == zVal || *zEnd != 0 || n < ANNEX_CHUNK_MIN ||
      n > ANNEX_CHUNK_MAX || (n & (n - 1)) != 0) {
    *pzErr = sqlite3_mprintf("bad chunk_size in \"%s\" (expected a power of "
                             "two from %d to %d)", zArg, ANNEX_CHUNK_MIN,
                             ANNEX_CHUNK_MAX);
    return SQLITE_ERROR;
  }
  p->nChunk = (int)n;
  return SQLITE_OK;
}

/* An option "key = value"; returns 1 if zArg is an option (handled or
** failed with rc set), 0 if it is a column definition. */
static int parse_option(const char *zArg, annex_config *p, int *pbIndexSeen,
                        int *pbChunkSet, int *pRc, char **pzErr) {
  arg_scan s = {zArg, 0};
  char zKey[32];
  const char *zVal;
  read_word(&s, zKey, sizeof(zKey));
  skip_space(&s);
  if (s.z[s.i] != '=') return 0;
  zVal = s.z + s.i + 1;
  while (isspace((unsigned char)*zVal)) zVal++;
  if (strcmp(zKey, "index") == 0) {
    if (*pbIndexSeen) {
      *pzErr = sqlite3_mprintf("index= given twice: \"%s\"", zArg);
      *pRc = SQLITE_ERROR;
      return 1;
    }
    *pbIndexSeen = 1;
    *pRc = parse_index(zArg, zVal, p, pzErr);
  } else if (strcmp(zKey, "chunk_size") == 0) {
    *pbChunkSet = 1;
    *pRc = parse_chunk_size(zArg, zVal, p, pzErr);
  } else if (strcmp(zKey, "device") == 0) {
    if (annex_device_parse(zVal, &p->eDevice) != 0) {
      *pzErr = sqlite3_mprintf("bad device in \"%s\" (expected auto, cpu or "
                               "gpu)", zArg);
      *pRc = SQLITE_ERROR;
    }
  } else {
    *pzErr = sqlite3_mprintf("unknown option '%s' in \"%s\" (options: index, "
                             "chunk_size, device)", zKey, zArg);
    *pRc = SQLITE_ERROR;
  }
  return 1;
}

/* Add a column; takes ownership of zName. */
static int add_column(annex_config *p, char *zName, const char *zType,
                      annex_col_kind eKind) {
  annex_column *aNew = sqlite3_realloc64(p->aCol,
                                         sizeof(annex_column) * (p->nCol + 1));
  if (aNew == NULL) {
    sqlite3_free(zName);
    return SQLITE_NOMEM;
  }
  p->aCol = aNew;
  aNew[p->nCol].zName = zName;
  aNew[p->nCol].zType = sqlite3_mprintf("%s", zType);
  aNew[p->nCol].eKind = eKind;
  aNew[p->nCol].iMeta = eKind == ANNEX_COL_META ? p->nMeta++ : -1;
  p->nCol++;
  return aNew[p->nCol - 1].zType ? SQLITE_OK : SQLITE_NOMEM;
}

static int parse_meta_type(const char *z, const char **pzType) {
  static const char *azOk[] = {"text", "integer", "int", "real"};
  static const char *azDecl[] = {"TEXT", "INTEGER", "INTEGER", "REAL"};
  for (int i = 0; i < 4; i++) {
    if (sqlite3_stricmp(z, azOk[i]) == 0) {
      *pzType = azDecl[i];
      return 0;
    }
  }
  return -1;
}

/* A column definition: vector, metadata or auxiliary. */
static int parse_column(const char *zArg, annex_config *p, char **pzErr) {
  arg_scan s = {zArg, 0};
  int bAux = 0, bOom = 0, rc;
  char *zName;
  char zType[32];
  const char *zDecl;
  if (s.z[0] == '+') {
    bAux = 1;
    s.i++;
    skip_space(&s);
  }
  zName = read_ident(&s, &bOom);
  if (zName == NULL) {
    if (bOom) return SQLITE_NOMEM;
    *pzErr = sqlite3_mprintf("cannot parse column definition \"%s\"", zArg);
    return SQLITE_ERROR;
  }
  skip_space(&s);
  if (bAux) {
    return add_column(p, zName, s.z + s.i, ANNEX_COL_AUX);
  }
  rc = parse_vector_type(&s, p, pzErr);
  if (rc < 0) {
    sqlite3_free(zName);
    return SQLITE_ERROR;
  }
  if (rc == 1) {
    if (p->iVecCol >= 0) {
      sqlite3_free(zName);
      *pzErr = sqlite3_mprintf("a table has one vector column; \"%s\" is a "
                               "second one", zArg);
      return SQLITE_ERROR;
    }
    p->iVecCol = p->nCol;
    return add_column(p, zName, "", ANNEX_COL_VECTOR);
  }
  read_word(&s, zType, sizeof(zType));
  skip_space(&s);
  if (s.z[s.i] != 0 || parse_meta_type(zType, &zDecl) != 0) {
    sqlite3_free(zName);
    *pzErr = sqlite3_mprintf(
        "unknown column type in \"%s\" (metadata columns are text, integer or "
        "real; vectors are float[N], int8[N] or bit[N]; prefix + for an "
        "auxiliary column)", zArg);
    return SQLITE_ERROR;
  }
  return add_column(p, zName, zDecl, ANNEX_COL_META);
}

/* Column names must be unique and must not shadow hidden columns. */
static int check_names(annex_config *p, const char *zTable, char **pzErr) {
  static const char *azReserved[] = {"distance", "k", "rowid", "oid",
                                     "_rowid_"};
  for (int i = 0; i < p->nCol; i++) {
    const char *z = p->aCol[i].zName;
    for (size_t j = 0; j < sizeof(azReserved) / sizeof(azReserved[0]); j++) {
      if (sqlite3_stricmp(z, azReserved[j]) == 0) {
        *pzErr = sqlite3_mprintf("column name '%s' is reserved", z);
        return SQLITE_ERROR;
      }
    }
    if (zTable && sqlite3_stricmp(z, zTable) == 0) {
      *pzErr = sqlite3_mprintf("a column may not be named like its table "
                               "('%s'): that name is kept for commands", z);
      return SQLITE_ERROR;
    }
    for (int j = 0; j < i; j++) {
      if (sqlite3_stricmp(z, p->aCol[j].zName) == 0) {
        *pzErr = sqlite3_mprintf("duplicate column name '%s'", z);
        return SQLITE_ERROR;
      }
    }
  }
  return SQLITE_OK;
}

static void trim_copy(const char *zIn, char *zOut, size_t nOut) {
  size_t n;
  while (isspace((unsigned char)*zIn)) zIn++;
  n = strlen(zIn);
  while (n > 0 && isspace((unsigned char)zIn[n - 1])) n--;
  if (n >= nOut) n = nOut - 1;
  memcpy(zOut, zIn, n);
  zOut[n] = 0;
}

int annex_config_parse(int argc, const char *const *argv, annex_config **pp,
                       char **pzErr) {
  annex_config *p = sqlite3_malloc64(sizeof(*p));
  int rc = SQLITE_OK, bIndexSeen = 0, bChunkSet = 0;
  *pp = NULL;
  if (p == NULL) return SQLITE_NOMEM;
  memset(p, 0, sizeof(*p));
  p->iVecCol = -1;
  p->eIndex = ANNEX_INDEX_FLAT;
  p->nChunk = ANNEX_CHUNK_DEFAULT;
  for (int i = 3; i < argc && rc == SQLITE_OK; i++) {
    char zArg[512];
    if (strlen(argv[i]) >= sizeof(zArg)) {
      *pzErr = sqlite3_mprintf("argument too long: \"%.40s...\"", argv[i]);
      rc = SQLITE_ERROR;
      break;
    }
    trim_copy(argv[i], zArg, sizeof(zArg));
    if (zArg[0] == 0) continue;
    if (!parse_option(zArg, p, &bIndexSeen, &bChunkSet, &rc, pzErr)) {
      rc = parse_column(zArg, p, pzErr);
    }
  }
  if (rc == SQLITE_OK && p->iVecCol < 0) {
    *pzErr = sqlite3_mprintf("annex needs one vector column, for example "
                             "\"embedding float[128]\"");
    rc = SQLITE_ERROR;
  }
  if (rc == SQLITE_OK) rc = check_names(p, argc > 2 ? argv[2] : NULL, pzErr);
  if (rc == SQLITE_OK) rc = settle_chunk_size(p, bChunkSet, pzErr);
  if (rc == SQLITE_OK && p->pAnnOps) rc = p->pAnnOps->xParams(p, pzErr);
  if (rc != SQLITE_OK) {
    annex_config_free(p);
    return rc;
  }
  *pp = p;
  return SQLITE_OK;
}

void annex_config_free(annex_config *p) {
  if (p == NULL) return;
  for (int i = 0; i < p->nCol; i++) {
    sqlite3_free(p->aCol[i].zName);
    sqlite3_free(p->aCol[i].zType);
  }
  sqlite3_free(p->aCol);
  sqlite3_free(p);
}
