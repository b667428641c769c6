/* kprintf.c -- freestanding printf family: kvsnprintf formats into a buffer, kprintf sends
 * the result to COM1. One formatting core writes through a small sink (buffer or serial). One
 * kprintf call's output is not interleaved with another CPU's (a print lock, given up after a
 * bounded wait so that a CPU that faulted while printing cannot silence the others). */
#include "kernel.h"
#include "cpu.h"

#define PRINT_SPIN_MAX         20000000ul  /* pause loops before printing without the lock */

static uint32_t print_lock;

/* 1 if this call took the print lock (and must release it), 0 if it gave up waiting. */
static int print_lock_take(void)
{
    for (unsigned long i = 0; i < PRINT_SPIN_MAX; i++) {
        if (!__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
            return 1;
        cpu_pause();
    }
    return 0;
}

struct sink {
    char  *buf;         /* NULL: write to the serial port */
    size_t size;        /* buffer capacity, NUL included */
    size_t len;         /* characters produced so far (may exceed size) */
};

static void sink_putc(struct sink *s, char c)
{
    if (!s->buf)
        serial_write(&c, 1);
    else if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void sink_repeat(struct sink *s, char c, int n)
{
    while (n-- > 0)
        sink_putc(s, c);
}

/* One converted field: prefix ("-", "0x"), digits or text, padded to width. */
static void emit_field(struct sink *s, const char *prefix, const char *body, size_t body_len,
                       int width, int zero_pad, int left)
{
    size_t plen = 0;
    while (prefix[plen])
        plen++;
    int pad = width - (int)(plen + body_len);
    if (!left && !zero_pad)
        sink_repeat(s, ' ', pad);
    for (size_t i = 0; i < plen; i++)
        sink_putc(s, prefix[i]);
    if (!left && zero_pad)
        sink_repeat(s, '0', pad);
    for (size_t i = 0; i < body_len; i++)
        sink_putc(s, body[i]);
    if (left)
        sink_repeat(s, ' ', pad);
}

/* Digits of v in base 10 or 16 at the end of buf[24]; returns the first digit. */
static char *utoa(uint64_t v, unsigned base, int upper, char *end)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = end;
    do {
        *--p = digits[v % base];
        v /= base;
    } while (v);
    return p;
}

enum length { LEN_INT, LEN_LONG, LEN_SIZE };

static uint64_t arg_unsigned(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_LONG: return va_arg(*ap, unsigned long);
    case LEN_SIZE: return va_arg(*ap, size_t);
    default:       return va_arg(*ap, unsigned int);
    }
}

static int64_t arg_signed(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_LONG: return va_arg(*ap, long);
    case LEN_SIZE: return (int64_t)va_arg(*ap, size_t);
    default:       return va_arg(*ap, int);
    }
}

static void format(struct sink *s, const char *fmt, va_list *ap)
{
    char num[24];
    char *end = num + sizeof num;
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_putc(s, *fmt);
            continue;
        }
        const char *spec = fmt++;
        int left = 0, zero = 0, width = 0;
        enum length len = LEN_INT;
        for (;; fmt++) {                        /* flags */
            if (*fmt == '-') left = 1;
            else if (*fmt == '0') zero = 1;
            else break;
        }
        if (*fmt == '*') {
            width = va_arg(*ap, int);
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {    /* l, ll, z: all 64-bit here */
            len = *fmt == 'z' ? LEN_SIZE : LEN_LONG;
            fmt++;
        }
        char *digits;
        switch (*fmt) {
        case 'd': case 'i': {
            int64_t v = arg_signed(ap, len);
            uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
            digits = utoa(mag, 10, 0, end);
            emit_field(s, v < 0 ? "-" : "", digits, end - digits, width, zero, left);
            break;
        }
        case 'u':
            digits = utoa(arg_unsigned(ap, len), 10, 0, end);
            emit_field(s, "", digits, end - digits, width, zero, left);
            break;
        case 'x': case 'X':
            digits = utoa(arg_unsigned(ap, len), 16, *fmt == 'X', end);
            emit_field(s, "", digits, end - digits, width, zero, left);
            break;
        case 'p':
            digits = utoa((uintptr_t)va_arg(*ap, void *), 16, 0, end);
            emit_field(s, "0x", digits, end - digits, width, zero, left);
            break;
        case 'c': {
            char c = (char)va_arg(*ap, int);
            emit_field(s, "", &c, 1, width, 0, left);
            break;
        }
        case 's': {
            const char *str = va_arg(*ap, const char *);
            if (!str)
                str = "(null)";
            size_t n = 0;
            while (str[n])
                n++;
            emit_field(s, "", str, n, width, 0, left);
            break;
        }
        case '%':
            sink_putc(s, '%');
            break;
        default:                                /* unknown: print the spec as written */
            for (; spec <= fmt && *spec; spec++)
                sink_putc(s, *spec);
            if (!*fmt)
                return;
        }
    }
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    static char dummy;
    struct sink s = { size ? buf : &dummy, size, 0 };
    va_list copy;
    va_copy(copy, ap);
    format(&s, fmt, &copy);
    va_end(copy);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return (int)s.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int kvprintf(const char *fmt, va_list ap)
{
    struct sink s = { NULL, 0, 0 };
    va_list copy;
    int locked = print_lock_take();
    va_copy(copy, ap);
    format(&s, fmt, &copy);
    va_end(copy);
    if (locked)
        __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
    return (int)s.len;
}

int kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvprintf(fmt, ap);
    va_end(ap);
    return n;
}
