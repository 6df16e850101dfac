/* emperor-jail: placeholder until the jail issue lands (create, exec, teardown of a vassal's jail). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		puts("emperor-jail 0.1.0");
		return 0;
	}
	fputs("emperor-jail: no command implemented yet\n", stderr);
	return 2;
}
