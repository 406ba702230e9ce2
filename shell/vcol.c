/*
** vcol.c — which column of an annex table holds the vectors.
**
** Owns: reading a table's CREATE VIRTUAL TABLE statement from sqlite_schema
** and picking out the vector column (NAME float[N] | float32[N] | int8[N] |
** bit[N], the grammar of ext/vtab/config.c), for the vector commands and
** for printing vector BLOBs readably. annex_info does not report the
** column's name, hence the parsing. Also the check the vector commands
** share: "is TABLE an annex table, and is COLUMN its vector column?".
*/
#include "shell.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int vcol_bytes(const vcol *p) {
  switch (p->eElem) {
    case VCOL_FLOAT: return 4 * p->nDim;
    case VCOL_INT8: return p->nDim;
    case VCOL_BIT: return p->nDim / 8;
  }
  return 0;
}

/* Parse one argument "NAME TYPE[N] ..." into *p; 1 when it is the vector
** column. */
static int parse_arg(const char *z, int n, vcol *p) {
  int i = 0, nName = 0;
  const char *zName;
  static const struct { const char *zType; vcol_elem e; } aType[] = {
    {"float32", VCOL_FLOAT}, {"float", VCOL_FLOAT},
    {"int8", VCOL_INT8}, {"bit", VCOL_BIT},
  };
  while (i < n && isspace((unsigned char)z[i])) i++;
  if (i < n && (z[i] == '"' || z[i] == '`' || z[i] == '[')) {
    char q = z[i] == '[' ? ']' : z[i];
    zName = z + ++i;
    while (i < n && z[i] != q) i++, nName++;
    if (i >= n) return 0;
    i++;
  } else {
    zName = z + i;
    while (i < n && (isalnum((unsigned char)z[i]) || z[i] == '_')) i++, nName++;
  }
  if (nName == 0 || nName >= (int)sizeof p->zName) return 0;
  while (i < n && isspace((unsigned char)z[i])) i++;
  for (size_t t = 0; t < sizeof aType / sizeof aType[0]; t++) {
    int m = (int)strlen(aType[t].zType);
    if (n - i > m && strncasecmp(z + i, aType[t].zType, (size_t)m) == 0) {
      int j = i + m;
      while (j < n && isspace((unsigned char)z[j])) j++;
      if (j < n && z[j] == '[') {
        memcpy(p->zName, zName, (size_t)nName);
        p->zName[nName] = 0;
        p->eElem = aType[t].e;
        p->nDim = atoi(z + j + 1);
        return p->nDim > 0;
      }
    }
  }
  return 0;
}

/* Walk the argument list of "... USING annex(args)"; 1 when found. */
static int parse_decl(const char *zSql, vcol *p) {
  const char *z = zSql, *zStart;
  int depth = 0;
  char q = 0;
  /* "USING annex (" — find the module name case-insensitively */
  for (; *z; z++) {
    if (strncasecmp(z, "using", 5) == 0 && isspace((unsigned char)z[5])) {
      const char *m = z + 5;
      while (isspace((unsigned char)*m)) m++;
      if (*m == '"' || *m == '`' || *m == '[' || *m == '\'') m++;
      if (strncasecmp(m, "annex", 5) == 0 &&
          !(isalnum((unsigned char)m[5]) || m[5] == '_')) {
        z = strchr(m, '(');
        break;
      }
      return 0;
    }
  }
  if (z == NULL || *z != '(') return 0;
  zStart = ++z;
  for (; *z; z++) {
    if (q) {
      if (*z == q) q = 0;
      continue;
    }
    if (*z == '\'' || *z == '"' || *z == '`') q = *z;
    else if (*z == '(' || *z == '[') depth++; /* float[N], [quoted] */
    else if ((*z == ')' || *z == ']') && depth > 0) depth--;
    else if ((*z == ',' || *z == ')') && depth == 0) {
      if (parse_arg(zStart, (int)(z - zStart), p)) return 1;
      if (*z == ')') return 0;
      zStart = z + 1;
    }
  }
  return 0;
}

int vcol_find(sqlite3 *db, const char *zSchema, const char *zTable, vcol *p) {
  sqlite3_stmt *pStmt = NULL;
  char *zSql;
  int rc, found = 0;
  memset(p, 0, sizeof *p);
  zSql = sqlite3_mprintf("SELECT sql FROM \"%w\".sqlite_schema WHERE "
                         "type = 'table' AND lower(name) = lower(%Q)",
                         zSchema ? zSchema : "main", zTable);
  if (zSql == NULL) return -1;
  rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, NULL);
  sqlite3_free(zSql);
  if (rc != SQLITE_OK) return -1;
  rc = sqlite3_step(pStmt);
  if (rc == SQLITE_ROW) {
    const char *zDecl = (const char *)sqlite3_column_text(pStmt, 0);
    found = zDecl ? parse_decl(zDecl, p) : 0;
    rc = SQLITE_DONE;
  }
  if (sqlite3_finalize(pStmt) != SQLITE_OK || rc != SQLITE_DONE) return -1;
  return found;
}

const char *vcol_elem_name(vcol_elem e) {
  return e == VCOL_FLOAT ? "float" : e == VCOL_INT8 ? "int8" : "bit";
}

int vcol_require(shell *sh, const char *zTable, const char *zCol, vcol *v) {
  int rc = vcol_find(sh->db, NULL, zTable, v);
  if (rc < 0) {
    shell_error(sh, "%s", sqlite3_errmsg(sh->db));
    return -1;
  }
  if (rc == 0) {
    shell_error(sh, "\"%s\" is not an annex table", zTable);
    return -1;
  }
  if (zCol && strcasecmp(zCol, v->zName) != 0) {
    shell_error(sh, "\"%s\" is not the vector column of %s (that is \"%s\")",
                zCol, zTable, v->zName);
    return -1;
  }
  return 0;
}
