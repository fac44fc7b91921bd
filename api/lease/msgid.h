/* Message identity (issue 13): a Message-ID kiln mints carries its send id and a MAC
 * under a server key, so a message found in an inbox is counted only when kiln sent it.
 *   <SENDID.KMAC@domain>   SENDID decimal, K the key id ([0-9a-z]), MAC 24 lowercase hex:
 *   HMAC-SHA256(message key K, "SENDID@domain") truncated to 96 bits.
 * Message key K = HKDF-SHA256(the secret key file's key, info "kiln/message-id/v1/K").
 * Pure: OpenSSL and libc only, no libpq, no I/O. */
#ifndef KILN_MSGID_H
#define KILN_MSGID_H

#include "secret.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSGID_MAC_HEX 24     /* 96 bits */
#define MSGID_DOMAIN_MAX 253 /* a DNS name */
/* '<' + 19 digits + '.' + key id + MAC + '@' + domain + '>' + NUL */
#define MSGID_MAX (1 + 19 + 1 + 1 + MSGID_MAC_HEX + 1 + MSGID_DOMAIN_MAX + 1 + 1)
#define MSGID_KEYS_MAX 36 /* one per key id character */

/* The message keys: the current one (mints) and every accepted one (verify). Owned by
 * whoever made it (main.c for the process), read-only after msgid_keyring_new, freed
 * with msgid_keyring_free. */
typedef struct msgid_keyring msgid_keyring;

/* Derives the keys from master: current is the minting key id (one of [0-9a-z]);
 * accepted (NULL or empty: none) lists more key ids verification accepts, comma
 * separated ("1,2"); the current one is always accepted. Returns NULL with a reason in
 * err on a bad key id or a failed derivation. */
msgid_keyring *msgid_keyring_new(const secret_key *master, const char *current,
                                 const char *accepted, char *err, size_t errlen);
void msgid_keyring_free(msgid_keyring *kr);

/* Whether domain can end a Message-ID: a dot-atom of letters, digits and '-', 1 to 253
 * bytes (what registration accepts). */
bool msgid_domain_ok(const char *domain, size_t len);

/* Writes the Message-ID of send_id (>= 1) from domain into out (MSGID_MAX bytes, NUL
 * terminated). The domain goes in lowercased. Returns its length, or -1 on a bad send
 * id or domain. */
int msgid_mint(const msgid_keyring *kr, int64_t send_id, const char *domain, char out[MSGID_MAX]);

/* The send id a Message-ID (len bytes, with its angle brackets, no surrounding space,
 * need not be NUL terminated) carries when it parses strictly and its MAC verifies under
 * an accepted key; -1 otherwise. The MAC is compared in constant time. */
int64_t msgid_verify(const msgid_keyring *kr, const char *text, size_t len);

#endif
