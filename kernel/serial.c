/* serial.c -- 16550 UART driver for COM1 at 115200 8N1, polled (no interrupts). All kernel
 * output (kprintf, the TAP stream of the test runner) goes through serial_write. */
#include "kernel.h"
#include "cpu.h"

/* Register offsets from COM1_PORT. */
#define UART_DATA    0      /* DLAB=0: transmit/receive; DLAB=1: divisor low */
#define UART_IER     1      /* DLAB=0: interrupt enable; DLAB=1: divisor high */
#define UART_FCR     2
#define UART_LCR     3
#define UART_MCR     4
#define UART_LSR     5

#define LCR_DLAB     0x80
#define LCR_8N1      0x03
#define FCR_ENABLE_CLEAR_14  0xC7   /* enable FIFOs, clear both, 14-byte threshold */
#define MCR_DTR_RTS_OUT2     0x0B
#define MCR_LOOPBACK         0x10
#define LSR_DATA_READY       0x01
#define LSR_THR_EMPTY        0x20
#define BAUD_DIVISOR         1      /* 115200 / 1 */
#define LOOPBACK_SPINS       100000

static void uart_out(unsigned reg, uint8_t v) { outb(COM1_PORT + reg, v); }
static uint8_t uart_in(unsigned reg) { return inb(COM1_PORT + reg); }

void serial_init(void)
{
    uart_out(UART_IER, 0);
    uart_out(UART_LCR, LCR_DLAB);
    uart_out(UART_DATA, BAUD_DIVISOR & 0xFF);
    uart_out(UART_IER, BAUD_DIVISOR >> 8);
    uart_out(UART_LCR, LCR_8N1);
    uart_out(UART_FCR, FCR_ENABLE_CLEAR_14);
    uart_out(UART_MCR, MCR_DTR_RTS_OUT2);
}

void serial_putc(char c)
{
    while (!(uart_in(UART_LSR) & LSR_THR_EMPTY))
        cpu_pause();
    uart_out(UART_DATA, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            serial_putc('\r');
        serial_putc(s[i]);
    }
}

int serial_loopback_test(uint8_t byte)
{
    int ok = 0;
    while (uart_in(UART_LSR) & LSR_DATA_READY)     /* drain stale input */
        (void)uart_in(UART_DATA);
    uart_out(UART_MCR, MCR_LOOPBACK | MCR_DTR_RTS_OUT2);
    serial_putc((char)byte);
    for (int i = 0; i < LOOPBACK_SPINS; i++) {
        if (uart_in(UART_LSR) & LSR_DATA_READY) {
            ok = uart_in(UART_DATA) == byte;
            break;
        }
        cpu_pause();
    }
    uart_out(UART_MCR, MCR_DTR_RTS_OUT2);
    return ok;
}
