/*
** output.c — printing result rows in the shell's modes.
**
** Owns: the modes and what each value looks like in them.
**
**   list   a|b, '|'-separated, header line with .headers on (the default)
**   box    Unicode-framed table, header always; numbers right-aligned
**   table  the same framed with + - |
**   csv    RFC 4180 quoting, '\n' line ends, header with .headers on
**   json   one array of objects, like sqlite3's json mode
**   line   "name = value", one line per column, a blank line between rows
**
** Values: NULL is empty (null in json); numbers and text as SQLite gives
** them. A BLOB read straight from an annex table's vector column prints as
** a vector, "[0.5, -1, 2.25]" (shortest float32 text; int8 as integers, bit
** as 0/1), cut to its first 6 elements plus "... N more" in box and table,
** whole elsewhere (a JSON array in json). Other BLOBs print as X'hex' (in
** box and table, longer than 32 bytes: the first 16 and the length).
** Knowing a column comes from a vector column needs SQLite's column
** metadata (ANNEX_SHELL_HAVE_COLUMN_METADATA); without it every BLOB is hex.
** Box and table buffer the whole result to size the columns; the other
** modes stream.
*/
#include "shell.h"
#include "vecio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *azModeName[] = {"list", "box", "table", "csv", "json",
                                   "line"};

int output_mode_from_name(const char *zName) {
  for (int i = 0; i < (int)(sizeof azModeName / sizeof azModeName[0]); i++) {
    if (strcasecmp(zName, azModeName[i]) == 0) return i;
  }
  return -1;
}

const char *output_mode_name(shell_mode m) { return azModeName[m]; }

/* How a cell is rendered. */
enum { STYLE_SHORT, STYLE_FULL, STYLE_JSON };

typedef struct colinfo {
  const char *zName;
  int bVec;          /* from an annex vector column */
  vcol v;
} colinfo;

/* ---------------------------------------------------- vector columns */

static void find_vector_columns(shell *sh, sqlite3_stmt *pStmt, colinfo *aCol,
                                int nCol) {
#ifdef ANNEX_SHELL_HAVE_COLUMN_METADATA
  for (int i = 0; i < nCol; i++) {
    const char *zTab = sqlite3_column_table_name(pStmt, i);
    const char *zOrig = sqlite3_column_origin_name(pStmt, i);
    const char *zDb = sqlite3_column_database_name(pStmt, i);
    int j;
    if (zTab == NULL || zOrig == NULL) continue;
    /* the same table seen in an earlier column? */
    for (j = 0; j < i; j++) {
      if (aCol[j].v.nDim && sqlite3_column_table_name(pStmt, j) &&
          strcasecmp(sqlite3_column_table_name(pStmt, j), zTab) == 0) {
        break;
      }
    }
    if (j < i) aCol[i].v = aCol[j].v;
    else if (vcol_find(sh->db, zDb, zTab, &aCol[i].v) != 1) {
      memset(&aCol[i].v, 0, sizeof aCol[i].v);
      continue;
    }
    aCol[i].bVec = strcasecmp(aCol[i].v.zName, zOrig) == 0;
  }
#else
  (void)sh, (void)pStmt, (void)aCol, (void)nCol;
#endif
}

/* --------------------------------------------------------------- cells */

static void append_vector(sqlite3_str *s, const unsigned char *a, int n,
                          const vcol *v, int style) {
  int nShow = v->nDim;
  char zNum[32];
  if (style == STYLE_SHORT && nShow > 8) nShow = 6;
  sqlite3_str_appendchar(s, 1, '[');
  for (int i = 0; i < nShow; i++) {
    if (i > 0) sqlite3_str_appendall(s, ", ");
    switch (v->eElem) {
      case VCOL_FLOAT: {
        float f;
        memcpy(&f, a + 4 * i, 4);
        vecio_fmt_float(zNum, sizeof zNum, f);
        sqlite3_str_appendall(s, zNum);
        break;
      }
      case VCOL_INT8:
        sqlite3_str_appendf(s, "%d", (int)(signed char)a[i]);
        break;
      case VCOL_BIT:
        sqlite3_str_appendchar(s, 1, (a[i / 8] >> (i % 8)) & 1 ? '1' : '0');
        break;
    }
  }
  if (nShow < v->nDim) {
    sqlite3_str_appendf(s, ", ... %d more", v->nDim - nShow);
  }
  sqlite3_str_appendchar(s, 1, ']');
  (void)n;
}

static void append_hex(sqlite3_str *s, const unsigned char *a, int n,
                       int style) {
  int nShow = (style == STYLE_SHORT && n > 32) ? 16 : n;
  sqlite3_str_appendall(s, "X'");
  for (int i = 0; i < nShow; i++) sqlite3_str_appendf(s, "%02X", a[i]);
  sqlite3_str_appendchar(s, 1, '\'');
  if (nShow < n) sqlite3_str_appendf(s, "... (%d bytes)", n);
}

static void append_json_string(sqlite3_str *s, const char *z) {
  sqlite3_str_appendchar(s, 1, '"');
  for (; *z; z++) {
    unsigned char c = (unsigned char)*z;
    if (c == '"' || c == '\\') sqlite3_str_appendf(s, "\\%c", c);
    else if (c == '\n') sqlite3_str_appendall(s, "\\n");
    else if (c == '\r') sqlite3_str_appendall(s, "\\r");
    else if (c == '\t') sqlite3_str_appendall(s, "\\t");
    else if (c < 0x20) sqlite3_str_appendf(s, "\\u%04x", c);
    else sqlite3_str_appendchar(s, 1, (char)c);
  }
  sqlite3_str_appendchar(s, 1, '"');
}

/* Append the text of column i of the current row. */
static void append_cell(sqlite3_str *s, sqlite3_stmt *pStmt, int i,
                        const colinfo *ci, int style) {
  switch (sqlite3_column_type(pStmt, i)) {
    case SQLITE_NULL:
      if (style == STYLE_JSON) sqlite3_str_appendall(s, "null");
      break;
    case SQLITE_FLOAT:
      if (style == STYLE_JSON && !isfinite(sqlite3_column_double(pStmt, i))) {
        sqlite3_str_appendall(s, "null");
        break;
      }
      /* fall through */
    case SQLITE_INTEGER:
      sqlite3_str_appendall(s, (const char *)sqlite3_column_text(pStmt, i));
      break;
    case SQLITE_TEXT: {
      const char *z = (const char *)sqlite3_column_text(pStmt, i);
      if (style == STYLE_JSON) append_json_string(s, z ? z : "");
      else sqlite3_str_appendall(s, z ? z : "");
      break;
    }
    case SQLITE_BLOB: {
      const unsigned char *a = sqlite3_column_blob(pStmt, i);
      int n = sqlite3_column_bytes(pStmt, i);
      if (ci->bVec && n == vcol_bytes(&ci->v)) {
        append_vector(s, a, n, &ci->v, style);
      } else if (style == STYLE_JSON) {
        sqlite3_str *h = sqlite3_str_new(NULL);
        char *z;
        append_hex(h, a, n, STYLE_FULL);
        z = sqlite3_str_finish(h);
        append_json_string(s, z ? z : "");
        sqlite3_free(z);
      } else {
        append_hex(s, a, n, style);
      }
      break;
    }
  }
}

/* The cell as a new string (sqlite3_malloc); NULL on OOM. */
static char *cell_text(sqlite3_stmt *pStmt, int i, const colinfo *ci,
                       int style) {
  sqlite3_str *s = sqlite3_str_new(NULL);
  int err;
  char *z;
  append_cell(s, pStmt, i, ci, style);
  err = sqlite3_str_errcode(s);
  z = sqlite3_str_finish(s); /* NULL when empty */
  if (err != SQLITE_OK) {
    sqlite3_free(z);
    return NULL;
  }
  return z ? z : sqlite3_mprintf("");
}

/* ------------------------------------------------- streaming modes */

static void put_csv_field(FILE *out, const char *z) {
  int quote = z[0] == 0 ? 0 : strpbrk(z, ",\"\r\n") != NULL ||
                              z[0] == ' ' || z[strlen(z) - 1] == ' ';
  if (!quote) {
    fputs(z, out);
    return;
  }
  fputc('"', out);
  for (; *z; z++) {
    if (*z == '"') fputc('"', out);
    fputc(*z, out);
  }
  fputc('"', out);
}

/* Print one row (or, with pStmt NULL, the header) in a streaming mode.
** Returns 0 or -1 on OOM. */
static int stream_row(shell *sh, sqlite3_stmt *pStmt, colinfo *aCol, int nCol,
                      int iRow) {
  FILE *out = sh->out;
  int nW = 0;
  if (sh->mode == MODE_LINE) {
    for (int i = 0; i < nCol; i++) {
      int w = (int)strlen(aCol[i].zName);
      if (w > nW) nW = w;
    }
    if (iRow > 0) fputc('\n', out);
  }
  if (sh->mode == MODE_JSON) fputs(iRow == 0 ? "[{" : ",\n{", out);
  for (int i = 0; i < nCol; i++) {
    char *z = pStmt ? cell_text(pStmt, i, &aCol[i],
                                sh->mode == MODE_JSON ? STYLE_JSON : STYLE_FULL)
                    : sqlite3_mprintf("%s", aCol[i].zName);
    if (z == NULL) return -1;
    switch (sh->mode) {
      case MODE_CSV:
        if (i > 0) fputc(',', out);
        put_csv_field(out, z);
        break;
      case MODE_JSON: {
        sqlite3_str *s = sqlite3_str_new(NULL);
        char *zKey;
        append_json_string(s, aCol[i].zName);
        zKey = sqlite3_str_finish(s);
        if (zKey == NULL) {
          sqlite3_free(z);
          return -1;
        }
        fprintf(out, "%s%s:%s", i > 0 ? "," : "", zKey, z);
        sqlite3_free(zKey);
        break;
      }
      case MODE_LINE:
        fprintf(out, "%*s = %s\n", nW, aCol[i].zName, z);
        break;
      default:
        if (i > 0) fputc('|', out);
        fputs(z, out);
        break;
    }
    sqlite3_free(z);
  }
  if (sh->mode == MODE_JSON) fputc('}', out);
  else if (sh->mode != MODE_LINE) fputc('\n', out);
  return 0;
}

/* ----------------------------------------------------- box and table */

typedef struct grid {
  int nCol;
  int nRow;          /* data rows */
  int nFilled;       /* rows (header included) whose cells are set or NULL */
  int nAlloc;
  char **az;         /* (nRow + 1) x nCol cells; row 0 is the header */
  unsigned char *aNum; /* per cell: right-align */
} grid;

/* Make room for row r (0 is the header) with every cell NULL. */
static int grid_row(grid *g, int r) {
  if (r >= g->nAlloc) {
    int nNew = g->nAlloc ? g->nAlloc * 2 : 64;
    char **az = realloc(g->az, sizeof(char *) * (size_t)nNew * (size_t)g->nCol);
    unsigned char *aN;
    if (az == NULL) return -1;
    g->az = az;
    aN = realloc(g->aNum, (size_t)nNew * (size_t)g->nCol);
    if (aN == NULL) return -1;
    g->aNum = aN;
    g->nAlloc = nNew;
  }
  memset(g->az + (size_t)r * (size_t)g->nCol, 0, sizeof(char *) * (size_t)g->nCol);
  memset(g->aNum + (size_t)r * (size_t)g->nCol, 0, (size_t)g->nCol);
  g->nFilled = r + 1;
  return 0;
}

static void grid_free(grid *g) {
  for (int i = 0; i < g->nFilled * g->nCol; i++) {
    sqlite3_free(g->az[i]);
  }
  free(g->az);
  free(g->aNum);
}

/* Display width: UTF-8 code points. */
static int utf8_width(const char *z) {
  int n = 0;
  for (; *z; z++) n += ((unsigned char)*z & 0xC0) != 0x80;
  return n;
}

static void rule(FILE *out, const int *aW, int nCol, const char *zL,
                 const char *zM, const char *zR, const char *zH) {
  fputs(zL, out);
  for (int i = 0; i < nCol; i++) {
    for (int j = 0; j < aW[i] + 2; j++) fputs(zH, out);
    fputs(i + 1 < nCol ? zM : zR, out);
  }
  fputc('\n', out);
}

static void grid_print(shell *sh, grid *g) {
  int box = sh->mode == MODE_BOX;
  const char *zV = box ? "\xe2\x94\x82" : "|";  /* │ */
  const char *zH = box ? "\xe2\x94\x80" : "-";  /* ─ */
  int *aW = calloc((size_t)g->nCol, sizeof(int));
  FILE *out = sh->out;
  if (aW == NULL) return;
  for (int r = 0; r <= g->nRow; r++) {
    for (int c = 0; c < g->nCol; c++) {
      int w = utf8_width(g->az[r * g->nCol + c]);
      if (w > aW[c]) aW[c] = w;
    }
  }
  if (box) rule(out, aW, g->nCol, "\xe2\x94\x8c", "\xe2\x94\xac",
                "\xe2\x94\x90", zH); /* ┌ ┬ ┐ */
  else rule(out, aW, g->nCol, "+", "+", "+", zH);
  for (int r = 0; r <= g->nRow; r++) {
    fputs(zV, out);
    for (int c = 0; c < g->nCol; c++) {
      const char *z = g->az[r * g->nCol + c];
      int pad = aW[c] - utf8_width(z);
      if (r > 0 && g->aNum[r * g->nCol + c]) fprintf(out, " %*s%s ", pad, "", z);
      else fprintf(out, " %s%*s ", z, pad, "");
      fputs(zV, out);
    }
    fputc('\n', out);
    if (r == 0) {
      if (box) rule(out, aW, g->nCol, "\xe2\x94\x9c", "\xe2\x94\xbc",
                    "\xe2\x94\xa4", zH); /* ├ ┼ ┤ */
      else rule(out, aW, g->nCol, "+", "+", "+", zH);
    }
  }
  if (box) rule(out, aW, g->nCol, "\xe2\x94\x94", "\xe2\x94\xb4",
                "\xe2\x94\x98", zH); /* └ ┴ ┘ */
  else rule(out, aW, g->nCol, "+", "+", "+", zH);
  free(aW);
}

/* Control characters would break the frame: show them as spaces. */
static void flatten(char *z) {
  for (; *z; z++) {
    if ((unsigned char)*z < 0x20) *z = ' ';
  }
}

/* ------------------------------------------------------------- driver */

int output_statement(shell *sh, sqlite3_stmt *pStmt) {
  int nCol = sqlite3_column_count(pStmt);
  int rc, iRow = 0, bGrid = sh->mode == MODE_BOX || sh->mode == MODE_TABLE;
  colinfo *aCol = NULL;
  grid g;
  memset(&g, 0, sizeof g);
  if (nCol == 0) {
    while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {}
    return rc;
  }
  aCol = calloc((size_t)nCol, sizeof *aCol);
  if (aCol == NULL) return SQLITE_NOMEM;
  for (int i = 0; i < nCol; i++) {
    aCol[i].zName = sqlite3_column_name(pStmt, i);
    if (aCol[i].zName == NULL) aCol[i].zName = "";
  }
  find_vector_columns(sh, pStmt, aCol, nCol);
  g.nCol = nCol;
  while ((rc = sqlite3_step(pStmt)) == SQLITE_ROW) {
    if (bGrid) {
      if (g.nRow == 0) {
        if (grid_row(&g, 0) != 0) goto oom;
        for (int i = 0; i < nCol; i++) {
          g.az[i] = sqlite3_mprintf("%s", aCol[i].zName);
          if (g.az[i] == NULL) goto oom;
          flatten(g.az[i]);
        }
      }
      if (grid_row(&g, g.nRow + 1) != 0) goto oom;
      g.nRow++;
      for (int i = 0; i < nCol; i++) {
        int t = sqlite3_column_type(pStmt, i);
        char **pz = &g.az[g.nRow * nCol + i];
        *pz = cell_text(pStmt, i, &aCol[i], STYLE_SHORT);
        if (*pz == NULL) goto oom;
        g.aNum[g.nRow * nCol + i] = t == SQLITE_INTEGER || t == SQLITE_FLOAT;
        flatten(*pz);
      }
    } else {
      if (iRow == 0 && sh->bHeaders &&
          (sh->mode == MODE_LIST || sh->mode == MODE_CSV)) {
        if (stream_row(sh, NULL, aCol, nCol, 0) != 0) goto oom;
      }
      if (stream_row(sh, pStmt, aCol, nCol, iRow) != 0) goto oom;
    }
    iRow++;
  }
  if (bGrid && g.nRow > 0) grid_print(sh, &g);
  if (sh->mode == MODE_JSON && iRow > 0) fputs("]\n", sh->out);
  grid_free(&g);
  free(aCol);
  return rc;
oom:
  grid_free(&g);
  free(aCol);
  return SQLITE_NOMEM;
}
