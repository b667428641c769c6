/*
 * locality.c -- the placement benchmark (`make locality`): how fast a program walks what it
 * allocated, with each allocator as its malloc. A heap is first churned (random small blocks
 * allocated and freed, leaving holes of every size, as a long-running program's heap has), then
 * N small objects of mixed sizes are allocated and linked in allocation order, the list is
 * walked (the program's own work: a garbage collector tracing its objects), and the objects are
 * freed in allocation order; a second round frees in random order. The phases are timed as a
 * whole (wall clock): the walk measures placement, not allocator code. One binary per allocator
 * (build/bench/bin/locality-NAME, linked with its bench adapter); `make bench` (driver.c) runs
 * them interleaved with --record and reports medians, tools/locality (`make locality`) alone.
 *
 * Usage: locality-NAME [--record] [--round R] [--smoke]. Without --record one line for
 * tools/locality ("NAME build MS walk MS free_seq MS free_rnd MS"); with it a record in
 * runner.c's format:  P,alloc,round,objects,build_ns,walk_ns,free_seq_ns,free_rnd_ns
 * (build and walk: the mean of the two rounds). --smoke: 1/50 of the objects and churn (a check
 * of the plumbing for bench_smoke, figures meaningless).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define ARENA_BYTES  (512ul << 20)
#define CHURN        400000            /* blocks live during the churn */
#define OBJECTS      1000000
#define WALKS        5
#define SMOKE_DIV    50

struct node {
    struct node *next;
    uint64_t     key;
    uint64_t     body[];                /* 0..30 more words: 16..256-byte objects */
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    const struct bench_alloc *a = &BENCH_ALLOC_SYMBOL;
    int record = 0;
    unsigned round_no = 0;
    size_t nchurn = CHURN, nobj = OBJECTS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--record"))
            record = 1;
        else if (!strcmp(argv[i], "--smoke"))
            nchurn = CHURN / SMOKE_DIV, nobj = OBJECTS / SMOKE_DIV;
        else if (!strcmp(argv[i], "--round") && i + 1 < argc)
            round_no = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--record] [--round R] [--smoke]\n", argv[0]);
            return 2;
        }
    }
    struct bench_rng rng;
    bench_rng_seed(&rng, BENCH_SEED_BASE);             /* the same objects for every allocator */
    static void *churn[CHURN];
    static struct node *order[OBJECTS];
    void *arena = a->takes_arena ? aligned_alloc(4096, ARENA_BYTES) : NULL;
    if (a->init(arena, ARENA_BYTES) != 0)
        return 1;
    /* 1. churn: a heap with holes, half of the churn blocks stay live */
    for (size_t i = 0; i < nchurn; i++)
        churn[i] = a->malloc(bench_range(&rng, 16, 511));
    for (size_t k = 0; k < 4 * nchurn; k++) {
        size_t i = bench_range(&rng, 0, nchurn - 1);
        a->free(churn[i]);
        churn[i] = a->malloc(bench_range(&rng, 16, 511));
    }
    for (size_t i = 0; i < nchurn; i += 2) {
        a->free(churn[i]);
        churn[i] = NULL;
    }
    double build = 0, walk = 0, free_seq = 0, free_rnd = 0;
    uint64_t sum = 0;
    for (int round = 0; round < 2; round++) {
        /* 2. build: objects of 16..256 bytes, linked in allocation order */
        double t0 = now_ms();
        struct node *head = NULL, **tail = &head;
        for (size_t i = 0; i < nobj; i++) {
            size_t words = bench_range(&rng, 0, 30);
            struct node *n = a->malloc(sizeof *n + words * 8);
            if (!n)
                return 2;
            n->next = NULL;
            n->key = i;
            *tail = n;
            tail = &n->next;
            order[i] = n;
        }
        double t1 = now_ms();
        /* 3. walk, as the program's own work does, WALKS times */
        for (int w = 0; w < WALKS; w++)
            for (struct node *n = head; n; n = n->next)
                sum += n->key;
        double t2 = now_ms();
        /* 4. free: in allocation order, or (round 1) in random order */
        if (round == 1)
            for (size_t i = nobj - 1; i > 0; i--) {
                size_t j = bench_range(&rng, 0, i);
                struct node *t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        for (size_t i = 0; i < nobj; i++)
            a->free(order[i]);
        double t3 = now_ms();
        build += t1 - t0;
        walk += t2 - t1;
        *(round ? &free_rnd : &free_seq) = t3 - t2;
    }
    if (sum != (uint64_t)WALKS * 2 * ((uint64_t)nobj * (nobj - 1) / 2))
        return 3;
    if (a->check && a->check() != 0)
        return 4;
    if (record)
        printf("P,%s,%u,%zu,%.0f,%.0f,%.0f,%.0f\n", a->name, round_no, nobj, build / 2 * 1e6,
               walk / 2 * 1e6, free_seq * 1e6, free_rnd * 1e6);
    else
        printf("%s build %.1f walk %.1f free_seq %.1f free_rnd %.1f\n", a->name, build / 2,
               walk / 2, free_seq, free_rnd);
    return 0;
}
