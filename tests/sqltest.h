/*
** sqltest.h — small helpers for SQL-level annex tests written with cmocka.
**
** Every helper that can fail a test does so through cmocka (fail_msg), so
** it must be called from inside a running cmocka test. SQL text arguments
** named zFmt are formatted with sqlite3_mprintf: %q, %Q and %w work, and a
** literal '%' must be written '%%'.
**
**   connections   st_open, st_close, st_tempdir, st_rmdir
**   statements    st_exec, st_try, st_prepare, st_run, st_int, st_double,
**                 st_text, st_expect_error, st_expect_stmt_error
**   k-NN          st_knn (bind ?1 = query, ?2 = k), st_collect
**   snapshots     st_snapshot_take / _equal / _free, st_assert_unchanged,
**                 st_integrity_ok, st_progress_finish
**   datasets      st_data_path, st_load_fvecs, st_load_ivecs
**   reference     st_vec_bytes, st_ref_distance, st_ref_rank, st_check_knn
**                 (exact brute force in double precision, never annex)
*/
#ifndef ANNEX_SQLTEST_H
#define ANNEX_SQLTEST_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* Connections ***********************************************************/

/* Open zPath (NULL or ":memory:" for an in-memory database) with extended
** result codes on and annex registered (sqlite3_annex_init). */
sqlite3 *st_open(const char *zPath);
/* Close db; fails the test if statements are left unfinalized. */
void st_close(sqlite3 *db);
/* A new empty directory under $TMPDIR (or /tmp); free() the result. */
char *st_tempdir(void);
/* Remove the files directly inside zDir, then zDir itself. */
void st_rmdir(const char *zDir);

/* Statements ************************************************************/

/* Run every statement of the formatted SQL; fail the test on an error. */
void st_exec(sqlite3 *db, const char *zFmt, ...);
/* Run every statement of the formatted SQL; return the extended result
** code (SQLITE_OK on success). sqlite3_errmsg(db) holds the message. */
int st_try(sqlite3 *db, const char *zFmt, ...);
/* Prepare one statement; fail the test on an error. */
sqlite3_stmt *st_prepare(sqlite3 *db, const char *zFmt, ...);
/* Step s until it is done, then reset it (bindings are kept). Returns the
** extended result code of the last step: SQLITE_DONE or an error. */
int st_run(sqlite3_stmt *s);

/* First column of the first row of a query; fail if there is no row. */
sqlite3_int64 st_int(sqlite3 *db, const char *zFmt, ...);
double st_double(sqlite3 *db, const char *zFmt, ...);
/* NULL for an SQL NULL; free the result with sqlite3_free(). */
char *st_text(sqlite3 *db, const char *zFmt, ...);

/* Run the SQL and require it to fail with extended code rc (or any error
** when rc is 0) and a message containing zSubstr (if not NULL). */
void st_expect_error(sqlite3 *db, int rc, const char *zSubstr,
                     const char *zFmt, ...);
/* Same for an already-bound statement (it is reset afterwards). */
void st_expect_stmt_error(sqlite3_stmt *s, int rc, const char *zSubstr);

/* k-NN ******************************************************************/

/* Prepare zSql (not formatted), bind ?1 to the BLOB pQuery (nQuery bytes;
** pQuery NULL leaves ?1 unbound) and, when the statement has a second
** parameter, ?2 to k; then st_collect. Returns the number of rows. */
int st_knn(sqlite3 *db, const char *zSql, const void *pQuery, int nQuery,
           sqlite3_int64 k, sqlite3_int64 *aRowid, double *aDist, int nMax);
/* Step s to the end: column 0 of each row goes to aRowid, column 1 to aDist
** (when aDist is not NULL). Fails the test on an error or more than nMax
** rows. Resets s; returns the number of rows. */
int st_collect(sqlite3_stmt *s, sqlite3_int64 *aRowid, double *aDist,
               int nMax);

/* Snapshots *************************************************************/

/* Everything a user sees in a table: SELECT rowid, * ORDER BY rowid, every
** value with its type and bytes (vectors included). */
typedef struct st_snapshot {
  unsigned char *a; /* serialized rows (malloc) */
  size_t n;         /* bytes in a */
  size_t nAlloc;
  int nRow;         /* rows */
} st_snapshot;

st_snapshot *st_snapshot_take(sqlite3 *db, const char *zTable);
int st_snapshot_equal(const st_snapshot *a, const st_snapshot *b);
void st_snapshot_free(st_snapshot *p);
/* Take a new snapshot of zTable and fail unless it equals pBefore. */
void st_assert_unchanged(sqlite3 *db, const char *zTable,
                         const st_snapshot *pBefore);
/* Fail unless INSERT INTO t(t) VALUES('integrity-check') succeeds. */
void st_integrity_ok(sqlite3 *db, const char *zTable);

/* End of a progress test: annex_info('t') on dbOther no longer shows an
** operation (no progress_* row); then close dbOther and db, remove the
** directory zDir and free() it. */
void st_progress_finish(sqlite3 *dbOther, sqlite3 *db, char *zDir);

/* Datasets **************************************************************/

/* "$ANNEX_DATA_DIR/zRel" (ANNEX_DATA_DIR defaults to ../shared/data);
** free() the result. */
char *st_data_path(const char *zRel);
/* Read a TEXMEX .fvecs / .ivecs file: *pnVec rows of *pnDim values, row
** major, from malloc (free() it). NULL if the file is missing or bad. */
float *st_load_fvecs(const char *zPath, int *pnVec, int *pnDim);
int32_t *st_load_ivecs(const char *zPath, int *pnVec, int *pnDim);

/* Reference k-NN ********************************************************/

typedef enum st_elem { ST_FLOAT = 1, ST_INT8 = 2, ST_BIT = 3 } st_elem;
typedef enum st_metric {
  ST_L2 = 1,     /* Euclidean distance (sqrt) */
  ST_COSINE = 2, /* 1 - cos; 1 when a norm is zero */
  ST_IP = 3,     /* -dot */
  ST_HAMMING = 4 /* differing bits */
} st_metric;

typedef struct st_hit {
  double dist;
  sqlite3_int64 rowid;
} st_hit;

/* Bytes of one vector (nDim bits for ST_BIT). */
size_t st_vec_bytes(st_elem e, int nDim);
/* Distance in double precision between two stored-format vectors. */
double st_ref_distance(st_elem e, st_metric m, const void *a, const void *b,
                       int nDim);
/* Rank the n vectors of aVec (stored format, back to back) whose aUse[i] is
** non-zero (aUse NULL: all) by (distance to pQuery, rowid). aOut holds n
** hits; returns how many were written. */
int st_ref_rank(st_elem e, st_metric m, int nDim, const void *pQuery,
                const void *aVec, const sqlite3_int64 *aRowid,
                const unsigned char *aUse, int n, st_hit *aOut);

/* Check a k-NN result (aRowid/aDist of nGot rows; aDist may be NULL)
** against the full reference ranking aRef[0..nRef): exactly nWant rows,
** distinct, each an eligible row, distances within tol relative (absolute
** below 1) of the reference at the same position, rowids in reference
** order. Rows whose reference distances differ but lie within tol of each
** other (float32 vs double near-ties) may trade places; exact ties must be
** broken by the smaller rowid. zWhat names the query in failures. */
void st_check_knn(const sqlite3_int64 *aRowid, const double *aDist, int nGot,
                  const st_hit *aRef, int nRef, int nWant, double tol,
                  const char *zWhat);

#endif /* ANNEX_SQLTEST_H */
