/*
 * govca.h - the public face of libgovca (filled in by the CA work).
 */
#ifndef GOVMAIL_GOVCA_H
#define GOVMAIL_GOVCA_H
#endif
