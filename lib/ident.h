/*
 * ident.h - checks of the identifiers Chinese authorities issue.
 *
 * Used by mailbox/ (accounts) and ca/ (certificate holder data).
 *
 * - Unified Social Credit Code (GB 32100-2015): 18 characters from the
 *   31-character set 0-9 A-H J-N P-R T-U W-Y (no I O Z S V); the last is a
 *   check character computed modulo 31 with weights 3^i mod 31.
 * - Resident identity number (GB 11643-1999): 17 digits and a check
 *   character computed by ISO 7064 MOD 11-2 ("X" stands for 10).
 *
 * The functions take NUL-terminated text and return 1 if valid, 0 if not
 * (wrong length, wrong alphabet or wrong check character).  Lower-case
 * letters are not accepted: callers upper-case first if they wish.
 */
#ifndef GOVMAIL_IDENT_H
#define GOVMAIL_IDENT_H

#define IDENT_USCC_LEN 18
#define IDENT_RESIDENT_ID_LEN 18

int ident_uscc_valid(const char *code);
/* The check character for the first 17 characters, or '\0' if invalid. */
char ident_uscc_check_char(const char *code17);
int ident_resident_id_valid(const char *id);
char ident_resident_id_check_char(const char *digits17);

#endif
