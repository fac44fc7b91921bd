#include <stdio.h>
int main(void) { puts("kiln-api " KILN_VERSION); return 0; }
