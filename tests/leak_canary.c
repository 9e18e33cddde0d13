/* Leaks on purpose. Built only in AddressSanitizer builds, where the test that runs it expects a
 * leak report: it passes only while LeakSanitizer is really on, so "leak-free" means something. */
#include <stdlib.h>
#include <string.h>

static void* volatile kept;

int main(void) {
    char* lost = malloc(64);
    memset(lost, 1, 64);
    kept = lost;
    kept = NULL; /* the only pointer is gone before exit */
    return lost[3] - 1;
}
