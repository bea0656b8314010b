#!/usr/bin/env perl
# test/sh/lib/sql-names.pl: the names the extension's SQL resolves through
# search_path, for test/sh/search_path.sh to shadow.
#
#   sql-names.pl FILE...      (*.c and dept--*.sql)
#
# From C files it takes every string literal (adjacent literals, also over
# several lines, are joined as the compiler joins them; printf conversions
# such as %s become a placeholder), keeps those that look like SQL, and from
# *.sql files the bodies of the SQL and plpgsql functions (dollar-quoted or
# BEGIN ATOMIC), including SQL text inside string literals of those bodies
# (format() templates such as the cron command).  In that SQL it finds
#   func NAME   an identifier followed by "(" (a function or aggregate call;
#               the last part of a qualified name; SQL syntax words skipped)
#   op OP       an operator token (=, <>, ->>, ||, ...), also OPERATOR(x.op)
#   cast TYPE   the target of "::type" or CAST(... AS type), and the types
#               of plpgsql DECLARE variables
# and prints each once, sorted, one per line ("func nextval").
use strict;
use warnings;

my (%func, %op, %cast);

# words that take "(" in SQL syntax without being a function name that
# search_path could resolve (PostgreSQL's own reserved and col_name keywords
# are filtered again by the test through pg_get_keywords()).
my %syntax = map { $_ => 1 } qw(
	all and any array as asc atomic begin between by case cast check coalesce conflict
	constraint cross default delete desc distinct do else end except exists extract
	filter for from greatest group having if in index inner insert intersect into is join
	key lateral least left like limit not null nullif offset on or order outer over
	overlay partition perform position primary raise references return returning returns
	right row rows select set some substring table then trim union unique update using
	values when where window with within elsif loop while foreach query execute
	varchar character char numeric decimal interval bit time timestamp float
);

sub sql_like {    # does this text look like SQL?
	my ($s) = @_;
	return $s =~ /\b(?:SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|WITH|VALUES|RETURNING)\b/;
}

sub add_op {
	my ($o) = @_;
	# PostgreSQL's lexer: a multi-character operator ends in + or - only
	# when it contains one of ~ ! @ # % ^ & | ` ?
	if (length $o > 1 && $o !~ /[~!@#%^&|`?]/) {
		$o =~ s/[+-]+$//;
	}
	$op{$o} = 1 if length $o;
}

sub last_part {
	my ($q) = @_;
	my @parts = split /\s*\.\s*/, $q;
	my $n = $parts[-1];
	$n =~ s/^"(.*)"$/$1/s and $n =~ s/""/"/g;
	return lc $n if $parts[-1] !~ /^"/;
	return $n;
}

my $ident = qr/(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_\$]*)/;
my $qname = qr/$ident(?:\s*\.\s*$ident)*/;

sub scan_sql {    # scan_sql TEXT: collect names from one SQL (or plpgsql) text
	my ($s) = @_;
	# nested dollar-quoted strings: scan their contents as SQL too
	while ($s =~ s/\$([A-Za-z_]\w*)?\$(.*?)\$\1?\$/ '' /s) {
		scan_sql($2);
	}
	$s =~ s{/\*.*?\*/}{ }gs;
	$s =~ s{--[^\n]*}{ }g;
	# string literals: SQL inside them (format() templates) is scanned too
	$s =~ s{[Ee]?'((?:[^']|'')*)'}{
		my $lit = $1; $lit =~ s/''/'/g;
		if (sql_like($lit)) { $lit =~ s/%(?:\d+\$)?-?[ILsd]/ x /g; scan_sql($lit); }
		' x '
	}ge;
	# plpgsql DECLARE sections: the variables' types
	while ($s =~ /\bDECLARE\b(.*?)\bBEGIN\b/gis) {
		for my $decl (split /;/, $1) {
			next unless $decl =~ /^\s*$ident\s+(?:CONSTANT\s+)?($qname)/i;
			my $t = $1;
			next if $t =~ /^(?:ALIAS|CURSOR|NO|SCROLL)$/i;
			$t =~ s/%\s*(?:ROW)?TYPE//i;
			$cast{last_part($t)} = 1;
		}
	}
	# OPERATOR(schema.op)
	while ($s =~ s/\bOPERATOR\s*\(\s*(?:$ident\s*\.\s*)?([-+*\/<>=~!@#%^&|`?]+)\s*\)/ = /i) {
		add_op($1);
	}
	# casts
	while ($s =~ /::\s*($qname)/g) {
		$cast{last_part($1)} = 1;
	}
	while ($s =~ /\bAS\s+($qname)\s*(?:\[\s*\]\s*)?\)/gi) {
		$cast{last_part($1)} = 1;
	}
	# calls: an identifier (maybe qualified) followed by "("
	my $prev = '';
	while ($s =~ /($qname)|(::)|([-+*\/<>=~!@#%^&|`?]+)|(\S)/g) {
		my ($name, $dc, $o, $other) = ($1, $2, $3, $4);
		if (defined $name) {
			my $after = substr($s, pos($s));
			if ($after =~ /^\s*\(/ && $prev !~ /^(?:into|table|conflict|index|on|using|references|::)$/i) {
				my $n = last_part($name);
				$func{$n} = 1 unless $syntax{lc $n} || $n =~ /^\d/;
			}
			$prev = lc $name;
		} elsif (defined $dc) {
			$prev = '::';
		} elsif (defined $o) {
			add_op($o);
			$prev = $o;
		} else {
			$prev = $other;
		}
	}
}

sub c_literals {    # the SQL-looking string literals of a C file, joined as the compiler does
	my ($src) = @_;
	my @out;
	my $cur;     # literal being joined, or undef
	my $i = 0;
	my $len = length $src;
	while ($i < $len) {
		my $c = substr($src, $i, 1);
		if (substr($src, $i, 2) eq '/*') {
			my $e = index($src, '*/', $i + 2);
			$i = $e < 0 ? $len : $e + 2;
		} elsif (substr($src, $i, 2) eq '//') {
			my $e = index($src, "\n", $i);
			$i = $e < 0 ? $len : $e + 1;
		} elsif ($c eq '"') {
			my $lit = '';
			$i++;
			while ($i < $len && substr($src, $i, 1) ne '"') {
				my $d = substr($src, $i, 1);
				if ($d eq '\\') {
					my $e = substr($src, $i + 1, 1);
					$lit .= $e eq 'n' || $e eq 't' ? ' ' : $e;
					$i += 2;
				} else {
					$lit .= $d;
					$i++;
				}
			}
			$i++;
			$cur = defined $cur ? $cur . $lit : $lit;
		} elsif ($c eq "'") {    # character constant ('"' starts no string)
			push @out, $cur if defined $cur;
			undef $cur;
			$i++;
			while ($i < $len && substr($src, $i, 1) ne "'") {
				$i += substr($src, $i, 1) eq '\\' ? 2 : 1;
			}
			$i++;
		} elsif ($c =~ /\s/) {
			$i++;
		} else {
			push @out, $cur if defined $cur;
			undef $cur;
			$i++;
		}
	}
	push @out, $cur if defined $cur;
	return grep { sql_like($_) } @out;
}

for my $file (@ARGV) {
	open my $fh, '<', $file or die "$file: $!\n";
	my $src = do { local $/; <$fh> };
	close $fh;
	if ($file =~ /\.c$|\.h$/) {
		for my $lit (c_literals($src)) {
			$lit =~ s/%%/%/g;
			$lit =~ s/%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?[sdiuxXfgGeEcp]/ x /g;
			scan_sql($lit);
		}
	} else {
		$src =~ s{--[^\n]*}{ }g;
		$src =~ s/\@ext(?:schema(?::\w+)?|owner)\@/x/g;    # replaced at CREATE EXTENSION
		# function bodies: dollar-quoted strings, and BEGIN ATOMIC ... END
		while ($src =~ /\$([A-Za-z_]\w*)?\$(.*?)\$\1?\$/gs) {
			scan_sql($2);
		}
		while ($src =~ /\bBEGIN\s+ATOMIC\b(.*?)\bEND\s*;/gis) {
			scan_sql($1);
		}
		# SQL-standard single-expression bodies: RETURN expr (outside quotes)
		(my $bare = $src) =~ s/\$([A-Za-z_]\w*)?\$.*?\$\1?\$/ /gs;
		while ($bare =~ /\)\s*RETURNS\b[^;]*?\bRETURN\b([^;]*);/gis) {
			scan_sql($1);
		}
	}
}

print "func $_\n" for sort keys %func;
print "op $_\n" for sort keys %op;
print "cast $_\n" for sort keys %cast;
