/*
 * sha256.h: SHA-256 (FIPS 180-4), used to fingerprint model files.
 *
 * A streaming context (init, update any number of times, final) plus a
 * one-shot helper that returns the lowercase hex digest.  Plain C, no
 * allocation, byte-order independent.
 */
#ifndef DEPT_NN_SHA256_H
#define DEPT_NN_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32

typedef struct Sha256
{
	uint32_t	h[8];			/* intermediate hash value H(i) */
	uint64_t	nbytes;			/* message length so far */
	uint8_t		block[64];		/* pending partial block */
	size_t		nblock;			/* bytes used in block */
} Sha256;

/* Methods */
void		sha256_init(Sha256 *ctx);
void		sha256_update(Sha256 *ctx, const void *data, size_t len);
void		sha256_final(Sha256 *ctx, uint8_t digest[SHA256_DIGEST_LEN]);

/* Hash len bytes and write the 64 hex digits plus a NUL into hex. */
void		sha256_hex(const void *data, size_t len, char hex[65]);

/* Finish ctx and write its digest as 64 lowercase hex digits + NUL. */
void		sha256_final_hex(Sha256 *ctx, char hex[65]);

#endif							/* DEPT_NN_SHA256_H */
