/* SPDX-License-Identifier: MIT */
/*
 * list.h - the intrusive lists of the slabs and their regions (slab.c,
 * region.c): doubly linked through their nodes' prev and next, so that
 * a node leaves from anywhere in O(1); pushed at the front; no head node,
 * so that the head is a plain pointer, NULL when the list is empty. The
 * caller holds whatever lock the list is under.
 */
#ifndef RCL_LIST_H
#define RCL_LIST_H

#define LIST_PUSH(head, n)                  \
    do {                                    \
        (n)->prev = NULL;                   \
        (n)->next = (head);                 \
        if (head)                           \
            (head)->prev = (n);             \
        (head) = (n);                       \
    } while (0)

#define LIST_DEL(head, n)                   \
    do {                                    \
        if ((n)->prev)                      \
            (n)->prev->next = (n)->next;    \
        else                                \
            (head) = (n)->next;             \
        if ((n)->next)                      \
            (n)->next->prev = (n)->prev;    \
    } while (0)

#endif
